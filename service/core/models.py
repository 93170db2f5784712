"""The wire contract as pydantic models: input events, alerts and dead letters.

`schemas/` is generated from these models by `reciprocity schemas`; a test fails on drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

SCHEMA_VERSION = 1

AccountId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f\x7f]+$"),
]


class EventType(StrEnum):
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"
    RETWEET = "retweet"
    REPLY = "reply"
    MENTION = "mention"
    POST = "post"


def parse_timestamp_ms(value: object) -> int:
    """Event time to epoch milliseconds: RFC 3339 with an offset, or integer epoch ms."""
    if isinstance(value, str):  # the common case first
        if len(value) > 64 or not _has_t(value):
            raise ValueError("not an RFC 3339 date-time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError("RFC 3339 date-time needs an offset (Z or +hh:mm)")
        return int(parsed.timestamp() * 1000)
    if isinstance(value, bool):
        raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("epoch milliseconds must not be negative")
        return value
    raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")


def _has_t(value: str) -> bool:
    """`"T" in value.upper()` without the copy for ASCII text (only a few non-ASCII characters
    upper-case to a T, such as the "st" ligatures)."""
    if "T" in value or "t" in value:
        return True
    return not value.isascii() and "T" in value.upper()


# An actor's creation time comes with each of its events: parsed once, then looked up. Cleared
# when full, which bounds it at a few MB; failures are not kept, so they raise every time.
_CREATED_AT_CACHE_SIZE = 65_536
_created_at_ms: dict[str, int] = {}


def parse_created_at_ms(value: object) -> int:
    """`parse_timestamp_ms`, remembering the strings it parsed."""
    if type(value) is not str:
        return parse_timestamp_ms(value)
    ms = _created_at_ms.get(value)
    if ms is None:
        ms = parse_timestamp_ms(value)
        if len(_created_at_ms) >= _CREATED_AT_CACHE_SIZE:
            _created_at_ms.clear()
        _created_at_ms[value] = ms
    return ms


def format_timestamp(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


_TIMESTAMP_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "string", "format": "date-time"},
            {"type": "integer", "minimum": 0, "description": "epoch milliseconds"},
        ]
    }
)
TimestampMs = Annotated[int, BeforeValidator(parse_timestamp_ms), _TIMESTAMP_SCHEMA]
CreatedAtMs = Annotated[int, BeforeValidator(parse_created_at_ms), _TIMESTAMP_SCHEMA]
Count = Annotated[int, Field(ge=0, strict=True)]


class ActorSnapshot(BaseModel):
    """The actor's profile as the producer saw it when the event happened."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    created_at: CreatedAtMs | None = None
    followers_count: Count | None = None
    following_count: Count | None = None
    posts_count: Count | None = None


class Event(BaseModel):
    """One social event. `occurred_at` is held as epoch milliseconds once validated."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        json_schema_extra={"title": "social.events message"},
    )

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    type: EventType
    actor_id: AccountId
    target_id: AccountId | None = None
    occurred_at: TimestampMs
    post_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    text: Annotated[str, StringConstraints(max_length=10_000)] | None = None
    actor: ActorSnapshot | None = None
    schema_version: Annotated[int, Field(ge=1, strict=True)] = 1

    @model_validator(mode="after")
    def _target_matches_type(self) -> Event:
        if self.type is EventType.POST:
            if self.target_id is not None:
                raise ValueError("target_id must be absent for a post")
        elif self.target_id is None:
            raise ValueError(f"target_id is required for a {self.type.value}")
        return self

    @property
    def self_targeted(self) -> bool:
        return self.target_id == self.actor_id


def trusted_event(
    event_id: str,
    type: EventType,
    actor_id: str,
    target_id: str | None,
    occurred_at: int,
    post_id: str | None,
    text: str | None,
    actor: ActorSnapshot | None,
    schema_version: int,
) -> Event:
    """An `Event` from values validated before (a stage message's): what `model_construct`
    makes, without its per-field default and alias handling, which costs ~10 µs an event."""
    event = _new(Event)
    _set(event, "__dict__", {
        "event_id": event_id,
        "type": type,
        "actor_id": actor_id,
        "target_id": target_id,
        "occurred_at": occurred_at,
        "post_id": post_id,
        "text": text,
        "actor": actor,
        "schema_version": schema_version,
    })  # fmt: skip
    _set(event, "__pydantic_fields_set__", set(_EVENT_FIELDS))
    _set(event, "__pydantic_extra__", None)
    _set(event, "__pydantic_private__", None)
    return event


def trusted_snapshot(
    created_at: int | None,
    followers_count: int | None,
    following_count: int | None,
    posts_count: int | None,
) -> ActorSnapshot:
    """`trusted_event` for the actor's profile snapshot."""
    snapshot = _new(ActorSnapshot)
    _set(snapshot, "__dict__", {
        "created_at": created_at,
        "followers_count": followers_count,
        "following_count": following_count,
        "posts_count": posts_count,
    })  # fmt: skip
    _set(snapshot, "__pydantic_fields_set__", set(_SNAPSHOT_FIELDS))
    _set(snapshot, "__pydantic_extra__", None)
    _set(snapshot, "__pydantic_private__", None)
    return snapshot


_set = object.__setattr__
_new = object.__new__
_EVENT_FIELDS = frozenset(Event.model_fields)
_SNAPSHOT_FIELDS = frozenset(ActorSnapshot.model_fields)


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}

Rule = Literal[
    "unsolicited_retweet_request", "follower_spike", "follow_churn", "duplicate_reply_spam"
]
# Not a detector: the alert that a rule's circuit breaker opened (its subject is that rule).
BreakerRule = Literal["rule_breaker_tripped"]
BREAKER_RULE: BreakerRule = "rule_breaker_tripped"
# What an alert's `rule` may be: a detection rule, or the breaker's own alert.
AlertRule = Literal[Rule, BreakerRule]


class Alert(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"title": "social.alerts message"}
    )

    alert_id: str = Field(
        description="Deterministic from rule, subject, severity and episode (rule_breaker_tripped: "
        "from the rule and the window it tripped in)."
    )
    rule: AlertRule
    rule_version: str
    severity: Severity
    subject_id: str
    related_ids: list[str] = Field(max_length=100)
    window_start: str = Field(description="RFC 3339 UTC, event time")
    window_end: str = Field(description="RFC 3339 UTC, event time")
    detected_at: str = Field(description="RFC 3339 UTC, processing time")
    evidence: dict[str, Any] = Field(
        description="Rule-specific counts, baseline and thresholds; sample_event_ids (<= 20)."
    )
    summary: str
    schema_version: int = SCHEMA_VERSION


# A class of its own, for the shadow topic alone: the alerts topic's payload stays exactly the
# fields the contract lists (extra keys forbidden), byte for byte what it was before modes.
class ShadowAlert(Alert):
    """An alert of a rule in shadow mode, or of an enforced rule past its quota: the alert
    enforcing it would send, plus `mode` (and `diverted_by` for the latter)."""

    model_config = ConfigDict(json_schema_extra={"title": "social.alerts.shadow message"})

    rule: Rule  # a detection rule: the breaker's own alerts always go to the alerts topic

    mode: Literal["shadow"] = Field(
        description="Always shadow: no moderation tool should act on this alert."
    )
    # Absent from the payload unless diverted: a shadow-mode alert stays the enforced alert plus
    # `mode`, byte for byte, as it was before quotas.
    diverted_by: Literal["quota"] | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="Present only when the rule is enforced but this alert went here instead "
        "of the alerts topic: quota, the rule's circuit breaker was open (it had raised its "
        "hourly or daily quota of alerts; its rule_breaker_tripped alert says when). Absent: "
        "the rule runs in shadow mode.",
    )


class DeadLetter(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"title": "social.events.dlq message"}
    )

    code: str = Field(description="Stable snake_case error code.")
    message: str = Field(description="Human-readable reason.")
    source_topic: str
    source_partition: int
    source_offset: int
    key_b64: str | None = Field(
        description="Original key bytes, base64 (only their first bytes if `truncated`); null "
        "if none."
    )
    key_size: int | None = Field(description="Length of the original key in bytes.")
    key_sha256: str | None = Field(description="SHA-256 of the whole original key, hex.")
    value_b64: str | None = Field(
        description="Original value bytes, base64 (only their first bytes if `truncated`); "
        "null if none."
    )
    value_size: int | None = Field(description="Length of the original value in bytes.")
    value_sha256: str | None = Field(description="SHA-256 of the whole original value, hex.")
    truncated: bool = Field(
        description="The key or value was longer than the worker keeps "
        "(RECIPROCITY_INPUT__DEAD_LETTER_KEEP_BYTES): its base64 holds a prefix; size and "
        "hash are of the whole."
    )
    rejected_at: str = Field(description="RFC 3339 UTC, processing time")
    schema_version: int = SCHEMA_VERSION
