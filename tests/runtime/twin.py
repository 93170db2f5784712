"""The runtime on in-memory twins of Kafka: topics in lists, stores in dicts, and a driver that
moves messages between stages, commits input offsets late (as a consumer does) and can crash
the process at any send and restart it from what was stored."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from service.core.models import Alert
from service.core.reciprocity import profile
from service.runtime.checkpoint import CompletionFailed
from service.runtime.framing import partition_for
from service.runtime.metrics import Metrics
from service.runtime.sinks import Delivery
from service.runtime.tables import (
    ACTOR_CODEC,
    KEY_CODEC,
    QUOTA_CODEC,
    RELATION_CODEC,
    TARGET_CODEC,
    ChangelogRecord,
    Codec,
    MemoryStore,
    Store,
)
from service.runtime.topology import (
    QUOTA_TABLE,
    TABLES,
    Clocks,
    TopicNames,
    Topology,
    TopologySinks,
    build_topology,
)
from service.settings import Settings

CODECS = {
    "actors": ACTOR_CODEC,
    "targets": TARGET_CODEC,
    "relations": RELATION_CODEC,
    QUOTA_TABLE: QUOTA_CODEC,
}
NAMES = TopicNames("stage1", "stage2", "stage3", "quota")
LATER_MS = 1_900_000_000_000  # 2030


class Crash(Exception):
    """The process died here."""


@dataclass
class Fault:
    """Crash at the `nth` send to `target` ("alerts", "shadow_alerts", "dead_letters",
    "stage1".."stage3", "quota", "changelog:<table>" for state records, "marker:<table>" for
    progress markers). `delivered`: the message reached the broker but its acknowledgement did
    not reach us."""

    target: str
    nth: int
    delivered: bool = False
    calls: int = 0
    fired: bool = False

    def check(self, target: str) -> None:
        """Raise before the send, or return whether to raise after it."""
        if self.fired or target != self.target:
            return
        self.calls += 1
        if self.calls == self.nth and not self.delivered:
            self.fired = True
            raise Crash(target)

    def after(self, target: str) -> None:
        if not self.fired and self.delivered and target == self.target and self.calls == self.nth:
            self.fired = True
            raise Crash(f"{target} (sent, not acknowledged)")


@dataclass
class MemoryRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _done(value: Any) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


@dataclass
class MemoryTopic:
    name: str
    partitions: int
    fault: Fault | None = None
    logs: list[list[MemoryRecord]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.logs = [[] for _ in range(self.partitions)]

    async def send(
        self, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Awaitable[Delivery]:
        if self.fault is not None:
            self.fault.check(self.name)
        number = partition if partition is not None else 0
        log = self.logs[number]
        log.append(MemoryRecord(self.name, number, len(log), key, value))
        if self.fault is not None:
            self.fault.after(self.name)
        return _done(Delivery(number, len(log) - 1))

    def values(self) -> list[bytes]:
        return [record.value or b"" for log in self.logs for record in log]


@dataclass
class MemoryChangelogTopic:
    """A changelog topic; marker records and state records fault separately."""

    table: str
    partitions: int
    fault: Fault | None = None
    logs: dict[int, list[ChangelogRecord]] = field(default_factory=dict)

    async def send(self, partition: int, records: Sequence[ChangelogRecord]) -> Awaitable[int]:
        kind = "marker" if records and records[0][0].startswith(b"\x00progress") else "changelog"
        target = f"{kind}:{self.table}"
        if self.fault is not None:
            self.fault.check(target)
        log = self.logs.setdefault(partition, [])
        log.extend(records)
        if self.fault is not None:
            self.fault.after(target)
        return _done(len(log) - 1)


class BytesStore:
    """A persistent store (as RocksDB): it holds bytes, so what it holds survives a crash
    exactly as written, whatever the process did to the objects it read from it."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.data: dict[str, bytes] = {}
        self.offsets: dict[int, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.data.get(key)
        return default if raw is None else self.codec.loads(raw)

    def put(self, key: str, value: Any, partition: int) -> None:
        self.data[key] = self.codec.dumps(value)

    def delete(self, key: str, partition: int) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)

    def stored_upto(self, partition: int, offset: int) -> None:
        self.offsets[partition] = offset


def recover(store: Store, log: dict[int, list[ChangelogRecord]], codec: Codec) -> None:
    """What table recovery does: apply each partition's changelog after the stored offset."""
    offsets: dict[int, int] = getattr(store, "offsets", {})
    for partition, records in log.items():
        for key, value in records[offsets.get(partition, -1) + 1 :]:
            name = KEY_CODEC.loads(key)
            if value is None:
                store.delete(name, partition)
            else:
                store.put(name, codec.loads(value), partition)


class TwinWorld:
    """Input, stage topics, outputs and state of one worker, surviving its restarts."""

    def __init__(
        self, settings: Settings, lines: list[bytes], persistent: bool, batch: int = 200
    ) -> None:
        self.settings = settings
        partitions = settings.topics.partitions
        self.partitions = partitions
        self.events = MemoryTopic("events", partitions)
        for line in lines:
            number = actor_partition(line, partitions)
            log = self.events.logs[number]
            log.append(MemoryRecord("events", number, len(log), None, line))
        self.topics = {
            name: MemoryTopic(name, partitions) for name in ("stage1", "stage2", "stage3", "quota")
        }
        self.alerts = MemoryTopic("alerts", 1)
        self.shadow_alerts = MemoryTopic("shadow_alerts", 1)
        self.dead_letters = MemoryTopic("dead_letters", 1)
        self.changelogs = {
            name: MemoryChangelogTopic(name, partitions) for name in (*TABLES, QUOTA_TABLE)
        }
        self.persistent = persistent
        self.stores: dict[str, Any] = {}
        self.committed: dict[tuple[str, int], int] = {}  # next offset to read
        self.batch = batch
        self.metrics = Metrics(CollectorRegistry())
        self.restarts = 0

    def arm(self, fault: Fault | None) -> None:
        outputs = [self.alerts, self.shadow_alerts, self.dead_letters]
        for topic in [*self.topics.values(), *outputs, self.events]:
            topic.fault = fault
        for changelog in self.changelogs.values():
            changelog.fault = fault

    def start(self, from_changelog: bool = False) -> Topology:
        """A fresh process: state from what was stored, positions from what was committed.
        `from_changelog`: as a new owner of the partitions, with no store of its own."""
        stores: dict[str, Store] = {}
        for name in (*TABLES, QUOTA_TABLE):
            if self.persistent and not from_changelog:
                store = self.stores.setdefault(name, BytesStore(CODECS[name]))
            else:
                store = MemoryStore()
            recover(store, self.changelogs[name].logs, CODECS[name])
            stores[name] = store
        return build_topology(
            self.settings,
            NAMES,
            stores,
            dict(self.changelogs),  # type: ignore[arg-type]
            TopologySinks(
                self.topics["stage1"],
                self.topics["stage2"],
                self.topics["stage3"],
                self.topics["quota"],
                self.alerts,
                self.shadow_alerts,
                self.dead_letters,
            ),
            self.metrics,
            # The wall clock after the traffic, so that no event is from the future.
            Clocks(lambda: LATER_MS, lambda: LATER_MS / 1000, lambda: 0.0),
            stage1_end=lambda partition: len(self.topics["stage1"].logs[partition]),
            ingest_caught_up=lambda partition: True,
            stop_waiting=lambda: False,
        )

    async def run(self, fault: Fault | None, commit_every: int = 3) -> None:
        """Drive the stream to its end, crashing once at `fault` and restarting."""
        self.arm(fault)
        while True:
            topology = self.start()
            try:
                await self._drive(topology, commit_every)
                await topology.flush()
                return
            except (Crash, CompletionFailed):
                self.restarts += 1
                if self.restarts > 3:
                    raise

    async def _drive(self, topology: Topology, commit_every: int, window: int = 4) -> None:
        """Stage messages are applied up to `window` ahead of their completion (as the worker's
        agents do); a message's offset counts as committable once it is completed, and offsets
        are committed now and then."""
        stages: list[tuple[str, Callable[[Any], Awaitable[Awaitable[Any]]]]] = [
            ("stage1", topology.stage1.handle),
            ("stage2", topology.stage2.handle),
            ("stage3", topology.stage3.handle),
        ]
        if topology.quota is not None:
            stages.append(("quota", topology.quota.handle))
        positions = dict(self.committed)
        completed: dict[tuple[str, int], int] = {}
        in_flight: deque[tuple[tuple[str, int], int, Awaitable[Any]]] = deque()

        async def complete_oldest() -> None:
            tp, next_offset, done = in_flight.popleft()
            await done
            completed[tp] = completed.get(tp, 0) + 1
            if completed[tp] % commit_every == 0:
                self.committed[tp] = next_offset

        while True:
            moved = await self._ingest_one_batch(topology, positions)
            for name, handle in stages:
                for partition, log in enumerate(self.topics[name].logs):
                    tp = (name, partition)
                    while positions.get(tp, 0) < len(log):
                        done = await handle(log[positions.get(tp, 0)])
                        positions[tp] = positions.get(tp, 0) + 1
                        in_flight.append((tp, positions[tp], done))
                        moved = True
                        while len(in_flight) > window:
                            await complete_oldest()
            while in_flight:
                await complete_oldest()
            if not moved:
                return

    async def _ingest_one_batch(
        self, topology: Topology, positions: dict[tuple[str, int], int]
    ) -> bool:
        moved = False
        for partition, log in enumerate(self.events.logs):
            tp = ("events", partition)
            start = positions.get(tp, 0)
            records = log[start : start + self.batch]
            if not records:
                continue
            acknowledged = await topology.ingest.handle(records)
            await acknowledged
            positions[tp] = start + len(records)
            self.committed[tp] = positions[tp]  # committed once acknowledged
            moved = True
        return moved

    def alerts_sent(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for value in self.alerts.values()]

    def shadow_alerts_sent(self) -> list[dict[str, Any]]:
        return [orjson.loads(value) for value in self.shadow_alerts.values()]

    def profiles(
        self, accounts: list[str], now_ms: int, from_changelog: bool = False
    ) -> dict[str, Any]:
        topology = self.start(from_changelog)
        config = topology.pipeline.config
        return {
            account: profile(
                config,
                account,
                topology.tables.actors.get(account),
                topology.tables.targets.get(account),
                now_ms,
            )
            for account in accounts
        }


def actor_partition(line: bytes, partitions: int) -> int:
    """Keyed by actor, as producers should; malformed lines to partition 0."""
    try:
        return partition_for(str(orjson.loads(line)["actor_id"]), partitions)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return 0


def unique_alerts(alerts: list[Alert]) -> dict[str, Alert]:
    return {alert.alert_id: alert for alert in alerts}
