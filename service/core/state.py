"""Per-account state: what the stages keep, how big it may grow, how it serializes.

Three tables, all keyed so that one account's rows live on one partition:

- `actors[A]`: A's outgoing side (stage 1) and its RT-request tally (stage 3).
- `targets[B]`: B's incoming side (stage 2).
- `relations["B A"]`: B's own relation to A (follows, followed back, last engaged), written
  when B acts and read when A reaches B. The key starts with the owner, so it is stored and
  read on the owner's partition. Ids never contain whitespace, so the space is unambiguous.

Values are slotted objects of lists and ints; `to_value`/`from_value` give JSON-ready forms.
Bounds per account (defaults) are listed in the README ("State and its bounds").
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol

from service.core.windows import Timeline

# Kinds counted on an account's outgoing timeline (stage 1).
GIVEN_FOLLOW, GIVEN_UNFOLLOW, GIVEN_RETWEET, GIVEN_REPLY, GIVEN_MENTION, GIVEN_POST = range(6)
GIVEN_KINDS = 6
# Kinds counted on an account's incoming timeline (stage 2); FOLLOW_BACK: one of this
# account's follows was returned.
(
    RECEIVED_FOLLOW,
    RECEIVED_UNFOLLOW,
    RECEIVED_RETWEET,
    RECEIVED_REPLY,
    RECEIVED_MENTION,
    RECEIVED_FOLLOW_BACK,
) = range(6)
RECEIVED_KINDS = 6

# Relation flags and layout: [flags, followed_at_ms, engaged_at_ms, last_change_event_hash,
# last_change_outcome(, followed_back_by_event_hash)]. The hashes make an event applied again
# (a replayed follow/unfollow, or a follow-back whose count a crash lost) give the same outcome.
FOLLOWS = 1
FOLLOWED_BACK = 2
Relation = list[int]
# Positions in a relation row (the stored layout: the row stays a plain list).
R_FLAGS, R_FOLLOWED_AT, R_ENGAGED_AT, R_CHANGE_EVENT, R_CHANGE_OUTCOME, R_BACK_EVENT = range(6)


# Recent ids past this many are also kept in a set for membership tests (see RecentIds).
INDEXED_FROM = 16


def relation_key(owner: str, other: str) -> str:
    return f"{owner} {other}"


def id_hash(event_id: str) -> int:
    """A stable 63-bit hash of an event id (Python's hash() differs between processes)."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "little") >> 1


class RecentIds:
    """Hashes of recently seen event ids, for de-duplication within the lateness bound.

    Once full, the oldest id is forgotten and `floor` rises to its event time: anything at or
    below the floor is treated as late, so a forgotten id can never be counted twice. Each id
    also keeps the position (stage message offset, or -1) of the message that applied it.

    Past `INDEXED_FROM` ids the hashes are also held in a set (in memory only): the usual
    answer, not seen, then costs one lookup instead of a scan over scattered ints. An id is
    only remembered when it is not there yet, so the list never holds one twice and the set
    mirrors it exactly.
    """

    __slots__ = ("_index", "floor", "hashes", "positions", "times")

    def __init__(
        self,
        hashes: list[int] | None = None,
        times: list[int] | None = None,
        floor: int = -1,
        positions: list[int] | None = None,
    ) -> None:
        self.hashes: list[int] = hashes if hashes is not None else []
        self.times: list[int] = times if times is not None else []
        self.positions: list[int] = positions if positions is not None else []
        self.floor = floor
        self._index: set[int] | None = None

    def __contains__(self, h: int) -> bool:
        index = self._index
        if index is None:
            return h in self.hashes
        return h in index

    def position_of(self, h: int) -> int:
        return self.positions[self.hashes.index(h)]

    def arrived_after(self, later: int, earlier: int) -> bool:
        """Both remembered and `later` arrived after `earlier`."""
        hashes = self.hashes
        if later not in hashes or earlier not in hashes:
            return False
        return hashes.index(later) > hashes.index(earlier)

    def remember(
        self, h: int, at_ms: int, oldest_useful_ms: int, capacity: int, position: int = -1
    ) -> None:
        hashes, times, positions = self.hashes, self.times, self.positions
        hashes.append(h)
        times.append(at_ms)
        positions.append(position)
        index = self._indexed(h)
        # Ids older than the lateness bound can never be re-counted anyway: drop them first.
        while times and times[0] < oldest_useful_ms:
            if index is not None:
                index.discard(hashes[0])
            del hashes[0], times[0], positions[0]
        while len(hashes) > capacity:
            if times[0] > self.floor:
                self.floor = times[0]
            if index is not None:
                index.discard(hashes[0])
            del hashes[0], times[0], positions[0]

    def remember_arrival(self, h: int, capacity: int) -> None:
        """Remember by arrival order only: for stages whose input order is not event time."""
        hashes = self.hashes
        hashes.append(h)
        index = self._indexed(h)
        if len(hashes) > capacity:
            if index is not None:
                index.discard(hashes[0])
            del hashes[0]

    def _indexed(self, h: int) -> set[int] | None:
        """Add the newest hash `h` to the set, or build the set once the list is long."""
        index = self._index
        if index is not None:
            index.add(h)
        elif len(self.hashes) >= INDEXED_FROM:
            index = self._index = set(self.hashes)
        return index

    def to_value(self) -> list[Any]:
        return [self.floor, self.hashes, self.times, self.positions]

    @classmethod
    def from_value(cls, value: list[Any]) -> RecentIds:
        return cls(value[1], value[2], value[0], value[3])


# An episode per rule: [started_ms, last_trigger_ms, highest_severity_rank_sent].
Episodes = dict[str, list[int]]
E_STARTED, E_LAST_TRIGGER, E_RANK = range(3)


class ActorState:
    __slots__ = (
        "churn",
        "churn_samples",
        "episodes",
        "given",
        "ids",
        "recent_follows",
        "relation_count",
        "request_ids",
        "strangers",
        "texts",
        "watermark",
    )

    def __init__(self) -> None:
        self.watermark = -1
        self.ids = RecentIds()
        self.given = Timeline()
        self.relation_count = 0
        # follow_churn: hourly rows [index, follows, unfollows, churned, churned_followed_back]
        self.churn: list[list[int]] = []
        # follow_churn: latest churned pairs [[target_id, event_id], ...] (<= 20)
        self.churn_samples: list[list[str]] = []
        # duplicate_reply_spam: [[text_hash, sample, [[target, at_ms, event_id], ...]], ...]
        self.texts: list[list[Any]] = []
        # unsolicited_retweet_request: strangers asked [[stranger_id, at_ms, event_id], ...]
        self.strangers: list[list[Any]] = []
        self.request_ids = RecentIds()
        self.episodes: Episodes = {}
        # follower_spike (lockstep): latest follows [[target_hash, at_ms], ...], oldest first
        self.recent_follows: list[list[int]] = []

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "w": self.watermark,
            "ids": self.ids.to_value(),
            "given": self.given.rows,
            "rel": self.relation_count,
            "churn": self.churn,
            "churn_s": self.churn_samples,
            "texts": self.texts,
            "str": self.strangers,
            "req_ids": self.request_ids.to_value(),
            "ep": self.episodes,
        }
        if self.recent_follows:  # most accounts never follow: no key, no bytes
            value["fl"] = self.recent_follows
        return value

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> ActorState:
        state = cls()
        state.watermark = value["w"]
        state.ids = RecentIds.from_value(value["ids"])
        state.given = Timeline(value["given"])
        state.relation_count = value["rel"]
        state.churn = value["churn"]
        state.churn_samples = value["churn_s"]
        state.texts = value["texts"]
        state.strangers = value["str"]
        state.request_ids = RecentIds.from_value(value["req_ids"])
        state.episodes = value["ep"]
        state.recent_follows = value.get("fl", [])
        return state


class TargetState:
    __slots__ = (
        "episodes",
        "first_seen",
        "ids",
        "lockstep",
        "received",
        "spike",
        "spike_long",
        "spike_samples",
        "watermark",
    )

    def __init__(self) -> None:
        self.watermark = -1
        self.first_seen = -1
        self.ids = RecentIds()
        self.received = Timeline()
        # follower_spike: minute rows [index, follows, low_quality_follows]
        self.spike: list[list[int]] = []
        # follower_spike: the same counts in 15-minute rows, for the 1 h, 6 h and 24 h windows
        self.spike_long: list[list[int]] = []
        # follower_spike: latest low-quality followers [[follower_id, at_ms, event_id, signs]]
        self.spike_samples: list[list[Any]] = []
        self.episodes: Episodes = {}
        # follower_spike: latest followers that had just followed others
        # [[at_ms, follower_id, event_id, [target_hash, ...], counted_low_quality], ...]
        self.lockstep: list[list[Any]] = []

    def to_value(self) -> dict[str, Any]:
        value: dict[str, Any] = {
            "w": self.watermark,
            "first": self.first_seen,
            "ids": self.ids.to_value(),
            "recv": self.received.rows,
            "spike": self.spike,
            "spike_l": self.spike_long,
            "spike_s": self.spike_samples,
            "ep": self.episodes,
        }
        if self.lockstep:
            value["lock"] = self.lockstep
        return value

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> TargetState:
        state = cls()
        state.watermark = value["w"]
        state.first_seen = value["first"]
        state.ids = RecentIds.from_value(value["ids"])
        state.received = Timeline(value["recv"])
        state.spike = value["spike"]
        state.spike_long = value.get("spike_l", [])  # absent in state stored before it was kept
        state.spike_samples = value["spike_s"]
        state.episodes = value["ep"]
        state.lockstep = value.get("lock", [])
        return state


class Tables(Protocol):
    """Where state lives: Faust tables in the worker, dicts in tests and `replay`."""

    @property
    def actors(self) -> MutableMapping[str, ActorState]: ...

    @property
    def targets(self) -> MutableMapping[str, TargetState]: ...

    @property
    def relations(self) -> MutableMapping[str, Relation]: ...


@dataclass
class MemoryTables:
    actors: dict[str, ActorState]
    targets: dict[str, TargetState]
    relations: dict[str, Relation]

    @classmethod
    def empty(cls) -> MemoryTables:
        return cls({}, {}, {})
