"""Jetstream frames to contract events. Pure: no I/O, no Kafka, no clock.

A frame is one message of Jetstream's `/subscribe` stream (its JSON wire, as documented in
github.com/bluesky-social/jetstream): `did`, `time_us`, `kind`, and for a commit
`commit.operation`, `collection`, `rkey` and, unless it is a delete, `record`. `read_frame`
says what one frame means: the events to send, the change it makes to the follow store, or
why it is skipped (a reason from `SKIP_REASONS`). It never raises on what the network sends.

What maps:

    app.bsky.graph.follow create   follow    actor: repo DID, target: record.subject
    app.bsky.graph.follow delete   unfollow  target: the subject the store remembers for the rkey
    app.bsky.feed.repost create    retweet   target: the author DID of record.subject.uri
    app.bsky.feed.post create      reply     to the author of record.reply.parent.uri
                                   mention   one per account of its mention facets
                                   post      when it is neither a reply nor mentions anyone

Everything else (updates, deletes of posts and reposts, other collections, identity and
account frames) is skipped and counted.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from service.core.models import format_timestamp, parse_timestamp_ms

FOLLOW = "app.bsky.graph.follow"
REPOST = "app.bsky.feed.repost"
POST = "app.bsky.feed.post"
COLLECTIONS = (FOLLOW, REPOST, POST)
MENTION = "app.bsky.richtext.facet#mention"

# Frame kinds, a metric label: Jetstream's three, and "unknown" for whatever else arrives.
JETSTREAM_KINDS = ("commit", "identity", "account")
KINDS = (*JETSTREAM_KINDS, "unknown")

# Why a frame was skipped: a metric label, so a closed set. Never rename.
OVERSIZED = "oversized"
BINARY_FRAME = "binary_frame"  # compressed mode, which the bridge never asks for
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
UNKNOWN_KIND = "unknown_kind"
IDENTITY = "identity"
ACCOUNT = "account"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
INVALID_DID = "invalid_did"
INVALID_URI = "invalid_uri"
UNKNOWN_COLLECTION = "unknown_collection"
NOT_MAPPED = "not_mapped"
UNKNOWN_FOLLOW = "unknown_follow"
TEXT_TOO_LONG = "text_too_long"

SKIP_REASONS = (
    OVERSIZED,
    BINARY_FRAME,
    INVALID_JSON,
    NOT_AN_OBJECT,
    UNKNOWN_KIND,
    IDENTITY,
    ACCOUNT,
    MISSING_FIELD,
    INVALID_FIELD,
    INVALID_DID,
    INVALID_URI,
    UNKNOWN_COLLECTION,
    NOT_MAPPED,
    UNKNOWN_FOLLOW,
    TEXT_TOO_LONG,
)

EVENT_TYPES = ("follow", "unfollow", "retweet", "reply", "mention", "post")

# The contract's limits. Ten thousand characters encode to at most 60,000 bytes (a control
# character is escaped as \u00XX), so an event stays under the contract's 64 KiB.
MAX_ID_CHARS = 128
MAX_TEXT_CHARS = 10_000

# atproto's DID syntax; the contract's 128-character bound on account ids comes on top.
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
# atproto's record key syntax: also what keeps "/" out of the keys built from it below.
_RKEY = re.compile(r"[a-zA-Z0-9._:~-]{1,512}")
_AT_URI = re.compile(r"at://([^/?#]+)(/[^?#]*)?")

# A frame's time_us below 10^15 (September 2001) is not a time: Jetstream would read it back
# as a sequence number if it became the cursor. 10^16 is the year 2286.
_MIN_TIME_US = 10**15
_MAX_TIME_US = 10**16

# occurred_at is the record's createdAt when it is within these bounds of the frame's time_us,
# else time_us. createdAt is the author's own time, the same on every Jetstream instance
# (time_us is when this instance saw the record, so a re-read elsewhere would move it); but the
# author's client writes it, so it can be backdated (imported archives) or ahead (a wrong
# clock). Further back than the worker's largest allowed lateness (300 s) it would be ignored
# as late; ahead, it would move the account's event time past its other events.
_CREATED_AT_MAX_BEHIND_US = 300 * 1_000_000
_CREATED_AT_MAX_AHEAD_US = 60 * 1_000_000


@dataclass(frozen=True, slots=True)
class Remember:
    """A follow record was created: its delete will name only `key`."""

    key: str
    subject: str


@dataclass(frozen=True, slots=True)
class Forget:
    key: str


FollowChange = Remember | Forget


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event to send: the event's fields, and the JSON bytes that are its message."""

    event: dict[str, Any]
    value: bytes

    @property
    def key(self) -> bytes:
        """The Kafka key: the actor, as the contract asks of producers."""
        return str(self.event["actor_id"]).encode()

    @property
    def type(self) -> str:
        return str(self.event["type"])


@dataclass(frozen=True, slots=True)
class FrameOutcome:
    kind: str  # one of KINDS
    time_us: int | None  # None: the frame has no usable time and cannot move the cursor
    events: tuple[Outgoing, ...] = ()
    follow_change: FollowChange | None = None
    skipped: str | None = None  # one of SKIP_REASONS


class FollowLookup(Protocol):
    def subject(self, key: str) -> str | None: ...


class FollowStore:
    """Follow records by repo and rkey, for the deletes that name only the rkey. Bounded: past
    `capacity` records the oldest is forgotten, and its delete is skipped as `unknown_follow`."""

    def __init__(self, capacity: int) -> None:
        self._subjects: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def subject(self, key: str) -> str | None:
        return self._subjects.get(key)

    def apply(self, change: FollowChange | None) -> None:
        if isinstance(change, Remember):
            self._subjects[change.key] = change.subject
            self._subjects.move_to_end(change.key)
            if len(self._subjects) > self._capacity:
                self._subjects.popitem(last=False)
        elif isinstance(change, Forget):
            self._subjects.pop(change.key, None)

    def __len__(self) -> int:
        return len(self._subjects)


def follow_key(did: str, rkey: str) -> str:
    return f"{did}/{rkey}"  # neither a DID nor an rkey holds a "/"


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_frame(raw: bytes, follows: FollowLookup, max_frame_bytes: int) -> FrameOutcome:
    """What one frame (a text message's bytes) means. Never raises."""
    if len(raw) > max_frame_bytes:
        return FrameOutcome("unknown", None, skipped=OVERSIZED)
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:  # invalid UTF-8 included
        return FrameOutcome("unknown", None, skipped=INVALID_JSON)
    if not isinstance(frame, dict):
        return FrameOutcome("unknown", None, skipped=NOT_AN_OBJECT)
    kind = frame.get("kind")
    kind = kind if isinstance(kind, str) and kind in JETSTREAM_KINDS else "unknown"
    time_us = _time_us(frame.get("time_us"))
    try:
        if kind == "unknown":
            raise _Skip(UNKNOWN_KIND)
        if time_us is None:
            raise _Skip(MISSING_FIELD if "time_us" not in frame else INVALID_FIELD)
        if kind != "commit":
            raise _Skip(IDENTITY if kind == "identity" else ACCOUNT)
        events, change = _commit(frame, time_us, follows)
    except _Skip as skip:
        return FrameOutcome(kind, time_us, skipped=skip.reason)
    except Exception:  # a shape no check above foresaw: skipped like any malformed frame
        return FrameOutcome(kind, time_us, skipped=INVALID_FIELD)
    return FrameOutcome(kind, time_us, events=events, follow_change=change)


def _time_us(value: object) -> int | None:
    if type(value) is int and _MIN_TIME_US <= value < _MAX_TIME_US:
        return value
    return None


def _commit(
    frame: dict[str, Any], time_us: int, follows: FollowLookup
) -> tuple[tuple[Outgoing, ...], FollowChange | None]:
    did = _did(_field(frame, "did"))
    commit = _object(_field(frame, "commit"))
    operation = _field(commit, "operation")
    if operation not in ("create", "update", "delete"):
        raise _Skip(INVALID_FIELD)
    collection = _field(commit, "collection")
    if not isinstance(collection, str):
        raise _Skip(INVALID_FIELD)
    if collection not in COLLECTIONS:
        raise _Skip(UNKNOWN_COLLECTION)  # a server that ignored wantedCollections
    rkey = _field(commit, "rkey")
    if not isinstance(rkey, str) or not _RKEY.fullmatch(rkey) or rkey in (".", ".."):
        raise _Skip(INVALID_FIELD)
    source = _Source(did, collection, rkey, operation)
    if operation == "update":
        # The contract has no edits: the record was counted when it was created.
        raise _Skip(NOT_MAPPED)
    if operation == "delete":
        if collection != FOLLOW:
            raise _Skip(NOT_MAPPED)  # an un-repost or a deleted post has no event type
        key = follow_key(did, rkey)
        subject = follows.subject(key)
        if subject is None:
            raise _Skip(UNKNOWN_FOLLOW)
        # A delete carries no record, hence no createdAt: the frame's time is the event time.
        unfollow = source.event("unfollow", subject, time_us // 1000)
        return (unfollow,), Forget(key)
    record = _object(_field(commit, "record"))
    occurred_ms = _occurred_ms(record, time_us)
    if collection == FOLLOW:
        subject = _did(_field(record, "subject"))
        follow = source.event("follow", subject, occurred_ms)
        return (follow,), Remember(follow_key(did, rkey), subject)
    if collection == REPOST:
        uri = _field(_object(_field(record, "subject")), "uri")
        retweet = source.event("retweet", _author(uri), occurred_ms, post_id=uri)
        return (retweet,), None
    return _post(source, record, occurred_ms), None


def _post(source: _Source, record: dict[str, Any], occurred_ms: int) -> tuple[Outgoing, ...]:
    text = _field(record, "text")
    if not isinstance(text, str):
        raise _Skip(INVALID_FIELD)
    if len(text) > MAX_TEXT_CHARS:
        raise _Skip(TEXT_TOO_LONG)
    own_uri = f"at://{source.did}/{source.collection}/{source.rkey}"
    events: list[Outgoing] = []
    replied_to = None
    reply = record.get("reply")
    if reply is not None:
        # The parent's author comes from its URI, so a reply to a post never seen still maps.
        parent_uri = _field(_object(_field(_object(reply), "parent")), "uri")
        replied_to = _author(parent_uri)
        events.append(source.event("reply", replied_to, occurred_ms, post_id=parent_uri, text=text))
    for mentioned in _mentions(record.get("facets")):
        # A reply that also @-mentions the parent's author is one message to one account:
        # its reply event says so, a mention would count the same message twice.
        if mentioned == replied_to:
            continue
        events.append(source.event("mention", mentioned, occurred_ms, post_id=own_uri, text=text))
    if not events:
        events.append(source.event("post", None, occurred_ms, post_id=own_uri, text=text))
    # One send, as the contract counts them: the same actor, text and occurred_at second.
    return tuple(events)


def _mentions(facets: object) -> list[str]:
    """The accounts a post's mention facets name, each once, in order."""
    if facets is None:
        return []
    if not isinstance(facets, list):
        raise _Skip(INVALID_FIELD)
    found: dict[str, None] = {}
    for facet in facets:
        features = _object(facet).get("features")
        if not isinstance(features, list):
            raise _Skip(INVALID_FIELD)
        for feature in features:
            if _object(feature).get("$type") == MENTION:
                found[_did(_field(feature, "did"))] = None
    return list(found)


@dataclass(frozen=True, slots=True)
class _Source:
    """The record a frame is about: what event ids are made from."""

    did: str
    collection: str
    rkey: str
    operation: str

    def event(
        self,
        event_type: str,
        target: str | None,
        occurred_ms: int,
        post_id: str | None = None,
        text: str | None = None,
    ) -> Outgoing:
        event: dict[str, Any] = {
            "event_id": self.event_id(target if event_type == "mention" else None),
            "type": event_type,
            "actor_id": self.did,
        }
        if target is not None:
            event["target_id"] = target
        event["occurred_at"] = format_timestamp(occurred_ms)
        if post_id is not None and len(post_id) <= MAX_ID_CHARS:  # optional: left out if longer
            event["post_id"] = post_id
        if text is not None:
            event["text"] = text
        return Outgoing(event, orjson.dumps(event))

    def event_id(self, mentioned: str | None) -> str:
        """The same record and operation always give the same id, so a frame read again after
        a reconnect re-sends events the worker already counted, not new ones. The several
        mentions of one post differ by the account mentioned."""
        name = f"at://{self.did}/{self.collection}/{self.rkey}#{self.operation}"
        if mentioned is not None:
            name += f"@{mentioned}"
        return "bsky:" + hashlib.blake2b(name.encode(), digest_size=16).hexdigest()


def _occurred_ms(record: dict[str, Any], time_us: int) -> int:
    created = record.get("createdAt")
    try:
        created_us = parse_timestamp_ms(created) * 1000 if isinstance(created, str) else None
    except (ValueError, OverflowError):
        created_us = None
    if (
        created_us is not None
        and time_us - _CREATED_AT_MAX_BEHIND_US <= created_us <= time_us + _CREATED_AT_MAX_AHEAD_US
    ):
        return created_us // 1000
    return time_us // 1000


def _author(uri: object) -> str:
    """The DID of an at:// URI's repo: the author of the record it names."""
    if not isinstance(uri, str):
        raise _Skip(INVALID_FIELD)
    match = _AT_URI.fullmatch(uri)
    if match is None:
        raise _Skip(INVALID_URI)
    return _did(match.group(1))


def _did(value: object) -> str:
    if not isinstance(value, str):
        raise _Skip(INVALID_FIELD)
    if len(value) > MAX_ID_CHARS or not _DID.fullmatch(value):
        raise _Skip(INVALID_DID)
    return value


def _field(container: dict[str, Any], name: str) -> Any:
    value = container.get(name)
    if value is None:
        raise _Skip(MISSING_FIELD)
    return value


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Skip(INVALID_FIELD)
    return value
