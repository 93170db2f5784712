"""What detectors see and what they record.

A detector is `detect(ctx) -> None` over one stage's context. It reads the keyed account's
state, updates its own rule's slice of that state, and records effects (alerts, stranger
requests) on `ctx.effects`. The pipeline applies effects: episode gating, alert ids, routing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Protocol

from service.core.models import Event, EventType, Rule, Severity
from service.core.share_request import ShareRequestMatcher
from service.core.state import (
    GIVEN_KINDS,
    RECEIVED_KINDS,
    ActorState,
    TargetState,
)
from service.core.windows import BucketSpec, Levels, timeline_levels
from service.settings import DetectionSettings, RuleMode, RuleSection

# Signs that a follower looks bought (bit flags carried from stage 1 to stage 2).
FRESH_ACCOUNT = 1
FOLLOWS_FAR_MORE = 2
NO_POSTS = 4
FAST_FOLLOWER = 8
ONLY_FOLLOWS = 16  # no snapshot, and the stream shows it doing nothing but follow
LOCKSTEP = 32  # followed the same other accounts in the same minutes as other new followers
QUALITY_SIGNS = {
    FRESH_ACCOUNT: "fresh_account",
    FOLLOWS_FAR_MORE: "follows_far_more_than_followed",
    NO_POSTS: "no_posts",
    FAST_FOLLOWER: "follows_at_high_rate",
    ONLY_FOLLOWS: "only_follows_in_the_stream",
    LOCKSTEP: "follows_in_lockstep",
}


@dataclass(frozen=True, slots=True)
class TargetMessage:
    """An event as stage 2 (keyed by target) receives it, with facts stage 1 knew."""

    event_id: str
    event_hash: int
    type: EventType
    actor_id: str
    target_id: str
    occurred_at: int
    asks_for_share: bool
    follower_quality: int  # QUALITY_SIGNS bits of the actor; 0 = looks like a real account
    # Hashes of the other accounts the follower followed shortly before (follower_spike's
    # lockstep); empty for other events.
    co_follows: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class StrangerRequest:
    """Stage 2 found `requester_id` asked a stranger for a share; stage 3 tallies it."""

    event_id: str
    event_hash: int
    requester_id: str
    stranger_id: str
    occurred_at: int


@dataclass(frozen=True, slots=True)
class AlertIntent:
    rule: Rule
    subject_id: str
    severity: Severity
    at_ms: int  # event time of the triggering event
    window_start_ms: int
    window_end_ms: int
    related_ids: list[str]
    evidence: dict[str, Any]
    summary: str
    episode_gap_ms: int  # a trigger this long after the last one starts a new episode


@dataclass(slots=True)
class Effects:
    alerts: list[AlertIntent] = field(default_factory=list)
    stranger_requests: list[StrangerRequest] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Disorder:
    """How far out of event-time order events may come, which bucketed windows keep room for."""

    lateness_ms: int  # stage 1: the producers' disorder (allowed lateness)
    incoming_ms: int  # stages 2 and 3: that plus the skew between merged actor partitions


class RuleModule(Protocol):
    """What a rule's module declares (see `service.detectors.RULES`)."""

    RULE: str
    LOGIC_VERSION: str  # bump when the rule's logic changes; thresholds show in the digest
    SETTINGS: str  # its section of DetectionSettings

    def windows(self, settings: DetectionSettings, disorder: Disorder) -> dict[str, BucketSpec]:
        """The bucket layouts of its windows, by a name of its own."""
        ...


class Config:
    """Settings plus what is derived from them once: timelines, the rules' bucket layouts,
    matcher, rule versions."""

    def __init__(self, settings: DetectionSettings, rules: Sequence[RuleModule] = ()) -> None:
        self.settings = settings
        lateness_ms = settings.state.allowed_lateness_seconds * 1000
        self.lateness_ms = lateness_ms
        # Incoming-side windows also absorb the skew between merged actor partitions.
        disorder = Disorder(lateness_ms, lateness_ms + settings.state.merge_skew_seconds * 1000)
        self.disorder = disorder
        self.given_levels: Levels = timeline_levels(GIVEN_KINDS, disorder.lateness_ms)
        self.received_levels: Levels = timeline_levels(RECEIVED_KINDS, disorder.incoming_ms)
        rt = settings.unsolicited_retweet_request
        self.matcher = ShareRequestMatcher(rt.request_patterns, rt.not_a_request_patterns)
        self.windows: dict[str, BucketSpec] = {}
        self.rule_versions: dict[str, str] = {}
        self.modes: dict[str, RuleMode] = {}
        # Per rule, (most enforced alerts per hour, per day); None: no quota.
        self.quotas: dict[str, tuple[int | None, int | None]] = {}
        for rule in rules:
            self.windows.update(rule.windows(settings, disorder))
            section: RuleSection = getattr(settings, rule.SETTINGS)
            # The mode and the quotas say where alerts go, not what they are: a shadow or
            # diverted alert carries the version its enforced twin would, and changing either
            # moves no version.
            self.rule_versions[rule.RULE] = rule_version(
                rule.LOGIC_VERSION, section.model_dump_json(exclude=set(ROUTING_SETTINGS))
            )
            self.modes[rule.RULE] = section.mode
            self.quotas[rule.RULE] = (section.quota_per_hour, section.quota_per_day)


# A rule section's fields that route its alerts and leave them unchanged.
ROUTING_SETTINGS = frozenset({"mode", "quota_per_hour", "quota_per_day"})


def rule_version(logic_version: str, thresholds_json: str) -> str:
    digest = blake2b(thresholds_json.encode(), digest_size=4).hexdigest()
    return f"{logic_version}.{digest}"


def keep_for(span_ms: int, width_ms: int, disorder_ms: int) -> int:
    """Buckets of `width_ms` a window of `span_ms` keeps, with room for late events."""
    return span_ms // width_ms + 1 + -(-disorder_ms // width_ms)


@dataclass(slots=True)
class ActorContext:
    """Stage 1, keyed by the actor."""

    config: Config
    event: Event
    state: ActorState
    # What this event did to the actor's relation to the target (filled by the pipeline).
    started_follow: bool
    churned_pair: bool
    churned_pair_followed_back: bool
    incoming: TargetState | None  # the actor's own incoming side (same partition)
    effects: Effects


@dataclass(slots=True)
class TargetContext:
    """Stage 2, keyed by the target."""

    config: Config
    message: TargetMessage
    state: TargetState
    # The target's own relation to the actor, as the target's own events left it.
    target_follows_actor: bool
    target_engaged_actor_at: int  # -1 if never
    effects: Effects


@dataclass(slots=True)
class RequesterContext:
    """Stage 3, keyed by the requester of a share from a stranger."""

    config: Config
    request: StrangerRequest
    state: ActorState
    effects: Effects
