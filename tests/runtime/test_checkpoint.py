"""The checkpoint's crash points, without Kafka: for each numbered step of `Checkpoint.run` (and
ingest's hand-over), the process dies there once mid-stream, restarts from what was stored,
and finishes the stream. Alerts and every account's counts must equal a replay."""

from __future__ import annotations

import asyncio
from collections import Counter
from functools import cache
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from service.core.decoding import EventDecoder, Rejection
from service.core.models import ShadowAlert, parse_timestamp_ms
from service.core.replay import Replayer
from service.core.rule_quota import trip_alert_id
from service.core.windows import HOUR_MS
from service.devtools.generate import generate_traffic
from service.runtime.checkpoint import (
    Checkpoint,
    CommitQueue,
    CompletionFailed,
    Forwards,
    Outputs,
    OutputSinks,
    StageInput,
)
from service.runtime.framing import (
    Chunk,
    Origin,
    StageOutbox,
    decode_message,
    encode_message,
    partition_for,
)
from service.runtime.metrics import Metrics
from service.runtime.progress import ProgressMarkers
from service.runtime.sinks import ListSink
from service.settings import DetectionSettings, Settings, TopicSettings
from tests.runtime.test_tables import state_tables
from tests.runtime.twin import Fault, MemoryRecord, TwinWorld

# Small generated traffic with every scenario: 2,278 events, 10 alerts.
SEED, USERS, ORGANIC = 3, 500, 1500


@cache
def traffic() -> tuple[list[bytes], Replayer, frozenset[tuple[str, str, str, str]]]:
    lines = [
        orjson.dumps(e) for e in generate_traffic(SEED, users=USERS, organic_events=ORGANIC).events
    ]
    settings = Settings()
    decoder = EventDecoder(settings.input, lambda: 2**62)
    replayer = Replayer(settings.detection, lambda: 0)
    alerts = []
    for line in lines:
        event = decoder.decode(line)
        assert not isinstance(event, Rejection)
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    expected = frozenset((a.rule, a.subject_id, a.severity.value, a.alert_id) for a in alerts)
    return lines, replayer, expected


def accounts(replayer: Replayer) -> list[str]:
    return sorted(replayer.tables.actors.keys() | replayer.tables.targets.keys())


def run(fault: Fault | None, persistent: bool, partitions: int = 1) -> TwinWorld:
    lines, _, _ = traffic()
    settings = Settings(topics=TopicSettings(partitions=partitions))
    world = TwinWorld(settings, lines, persistent)
    asyncio.run(world.run(fault))
    return world


def assert_same_as_replay(world: TwinWorld, exact_ids: bool) -> None:
    _, replayer, expected = traffic()
    sent = {(a["rule"], a["subject_id"], a["severity"], a["alert_id"]) for a in world.alerts_sent()}
    if exact_ids:
        assert sent == expected
    else:
        assert {a[:3] for a in sent} == {a[:3] for a in expected}
    # What this worker holds, and what a new owner would rebuild from the changelogs alone.
    for from_changelog in (False, True):
        served = world.profiles(accounts(replayer), replayer.newest_ms, from_changelog)
        for account, got in served.items():
            want = replayer.profile(account)
            for window in ("1h", "24h", "7d"):
                for part in ("given", "received", "posts"):
                    assert got["windows"][window][part] == want["windows"][window][part], (
                        account,
                        window,
                        part,
                        from_changelog,
                    )


def test_without_faults_the_twin_equals_replay() -> None:
    world = run(None, persistent=False)
    assert world.restarts == 0
    assert_same_as_replay(world, exact_ids=True)


# The step of Checkpoint.run a send belongs to, and which sends: (target, nth call).
CRASH_POINTS = [
    # ingest hands a batch over; nothing is committed until it is acknowledged
    ("ingest: stage-1 message", "stage1", 3),
    # 3. outputs acknowledged
    ("3. outputs: stage-2 message", "stage2", 5),
    ("3. outputs: stage-3 message", "stage3", 2),
    ("3. outputs: alert", "alerts", 4),
    # 4. state and changelog
    ("4. state: actors", "changelog:actors", 4),
    ("4. state: targets", "changelog:targets", 6),
    ("4. state: relations", "changelog:relations", 3),
    # 5. progress marker
    ("5. marker: stage 1 or 3 (actors)", "marker:actors", 4),
    ("5. marker: stage 2 (targets)", "marker:targets", 5),
]


@pytest.mark.parametrize(
    "persistent", [False, True], ids=["rebuilt-from-changelog", "store-survives"]
)
@pytest.mark.parametrize("delivered", [False, True], ids=["lost", "sent-not-acked"])
@pytest.mark.parametrize(("step", "target", "nth"), CRASH_POINTS, ids=[p[0] for p in CRASH_POINTS])
def test_a_crash_at_each_step_changes_nothing(
    step: str, target: str, nth: int, delivered: bool, persistent: bool
) -> None:
    fault = Fault(target, nth, delivered)
    world = run(fault, persistent)
    assert fault.fired, f"{step}: the stream never reached the crash point"
    assert world.restarts == 1
    assert_same_as_replay(world, exact_ids=True)


def test_with_several_partitions_stage_messages_pack_several_upstream_messages() -> None:
    # So that the crash points below are also crossed by packed messages.
    world = run(None, persistent=False, partitions=4)
    parts = [len(decode_message(value)) for value in world.topics["stage2"].values()]
    assert max(parts) > 1
    assert_same_as_replay(world, exact_ids=False)


@pytest.mark.parametrize(("step", "target", "nth"), CRASH_POINTS, ids=[p[0] for p in CRASH_POINTS])
def test_a_crash_with_several_partitions_changes_no_count(step: str, target: str, nth: int) -> None:
    # Stage 2 merges actor partitions in arrival order, so the event opening an episode (and
    # the alert id) may differ from replay's; subjects, severities and counts may not.
    fault = Fault(target, nth, delivered=True)
    world = run(fault, persistent=False, partitions=4)
    assert fault.fired
    assert_same_as_replay(world, exact_ids=False)


# --- packed stage messages -----------------------------------------------------------------


class Collecting:
    """A stage that records the items it is given and forwards each to partition 0."""

    name = "collecting"

    def __init__(self) -> None:
        self.applied: list[list[Any]] = []
        self.interrupted = False  # as stage 2 when a rebalance interrupts its wait

    async def ready(self, message: StageInput) -> bool:
        return not self.interrupted

    def apply(self, message: StageInput) -> Outputs:
        self.applied.append(list(message.items))
        forwards = StageOutbox()
        for item in message.items:
            forwards.add(0, item)
        return Outputs(forwards=forwards)


def checkpoint_on_twins() -> tuple[Checkpoint, ListSink, CommitQueue]:
    tables = state_tables()
    metrics = Metrics(CollectorRegistry())
    queue = CommitQueue(tables, metrics)
    forwards_sink = ListSink()
    forwards = Forwards(forwards_sink)
    queue.forwards.append(forwards)
    checkpoint = Checkpoint(
        tables,
        ProgressMarkers(tables.actors, "in"),
        OutputSinks(ListSink(), ListSink(), ListSink(), forwards),
        queue,
        metrics,
    )
    return checkpoint, forwards_sink, queue


def packed(*parts: tuple[Origin, list[Any]]) -> bytes:
    return encode_message(
        [Chunk(0, origin, [orjson.dumps(item) for item in items], 0) for origin, items in parts]
    )


def test_a_part_already_applied_is_left_out_of_a_packed_message() -> None:
    async def run() -> tuple[Collecting, list[bytes]]:
        checkpoint, forwards, queue = checkpoint_on_twins()
        stage = Collecting()
        first = packed((Origin(1, 10, 0), [["a"]]), (Origin(2, 5, 0), [["b"]]))
        await (await checkpoint.run(MemoryRecord("in", 0, 0, None, first), stage))
        # A replayed upstream message 2/5 packed with one not seen yet.
        second = packed((Origin(2, 5, 0), [["b"]]), (Origin(2, 6, 0), [["c"]]))
        await (await checkpoint.run(MemoryRecord("in", 0, 1, None, second), stage))
        # Nothing new at all: skipped, and the marker still moves past it.
        third = packed((Origin(1, 10, 0), [["a"]]))
        assert await (await checkpoint.run(MemoryRecord("in", 0, 2, None, third), stage)) is None
        assert checkpoint.markers.stored(0).applied_upto == 2
        await queue.flush()
        return stage, [value for _, value, _ in forwards.messages]

    stage, sent = asyncio.run(run())
    assert stage.applied == [[["a"], ["b"]], [["c"]]]
    # Forwards name the message that sent them, one part each.
    assert [[origin for origin, _ in decode_message(value)] for value in sent] == [
        [Origin(0, 0, 0)],
        [Origin(0, 1, 0)],
    ]


def test_a_message_the_stage_is_not_ready_for_is_left_unapplied_and_read_again() -> None:
    async def run() -> tuple[Collecting, list[bytes], int]:
        checkpoint, forwards, queue = checkpoint_on_twins()
        stage = Collecting()
        message = MemoryRecord("in", 0, 0, None, packed((Origin(1, 10, 0), [["a"]])))
        stage.interrupted = True
        assert await checkpoint.run(message, stage) is None
        await queue.flush()
        unmoved = checkpoint.markers.next_offset(0)
        stage.interrupted = False  # the partition's next owner reads it again
        await (await checkpoint.run(message, stage))
        await queue.flush()
        return stage, [value for _, value, _ in forwards.messages], unmoved

    stage, sent, unmoved = asyncio.run(run())
    assert unmoved == 0  # nothing of it stored: the marker still asks for offset 0
    assert stage.applied == [[["a"]]]
    assert len(sent) == 1


def test_forwards_of_messages_applied_in_one_round_go_out_as_one_message() -> None:
    async def run() -> list[bytes]:
        checkpoint, forwards, _ = checkpoint_on_twins()
        stage = Collecting()
        done = []
        for offset in range(5):
            value = packed((Origin(3, offset, 0), [[f"item {offset}"]]))
            done.append(await checkpoint.run(MemoryRecord("in", 0, offset, None, value), stage))
        await asyncio.gather(*done)
        return [value for _, value, _ in forwards.messages]

    sent = asyncio.run(run())
    # All five were applied before their round started: one message, five parts.
    assert [len(decode_message(value)) for value in sent] == [5]
    items = [item for value in sent for _, items in decode_message(value) for item in items]
    assert items == [[f"item {offset}"] for offset in range(5)]


def test_a_forward_that_cannot_be_sent_fails_the_round_and_every_message_in_it() -> None:
    async def run() -> list[BaseException | None]:
        checkpoint, forwards, _ = checkpoint_on_twins()
        forwards.fail = RuntimeError("broker says no")
        stage = Collecting()
        done = []
        for offset in range(3):
            value = packed((Origin(3, offset, 0), [[offset]]))
            done.append(await checkpoint.run(MemoryRecord("in", 0, offset, None, value), stage))
        results = await asyncio.gather(*done, return_exceptions=True)
        return [result if isinstance(result, BaseException) else None for result in results]

    failures = asyncio.run(run())
    assert all(isinstance(failure, CompletionFailed) for failure in failures)


# -- shadow mode: the same alerts, to their own topic --------------------------------------------

SHADOW = DetectionSettings(follower_spike={"mode": "shadow"})


@cache
def shadow_expected() -> frozenset[tuple[str, str, str, str]]:
    """What replay raises with follower_spike in shadow mode: its shadow alerts."""
    lines, _, _ = traffic()
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    replayer = Replayer(SHADOW, lambda: 0, include_shadow=True)
    alerts = []
    for line in lines:
        event = decoder.decode(line)
        assert not isinstance(event, Rejection)
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    shadow = [a for a in alerts if isinstance(a, ShadowAlert)]
    assert shadow, "the traffic must raise follower_spike"
    return frozenset((a.rule, a.subject_id, a.severity.value, a.alert_id) for a in shadow)


def run_shadow(fault: Fault | None, persistent: bool = False) -> TwinWorld:
    lines, _, _ = traffic()
    # One partition: alert ids then equal replay's exactly (see run).
    settings = Settings(detection=SHADOW, topics=TopicSettings(partitions=1))
    world = TwinWorld(settings, lines, persistent)
    asyncio.run(world.run(fault))
    return world


def test_a_shadow_rules_alerts_go_to_the_shadow_topic_only_counted_by_mode() -> None:
    _, _, expected = traffic()
    world = run_shadow(None)
    enforced = {
        (a["rule"], a["subject_id"], a["severity"], a["alert_id"]) for a in world.alerts_sent()
    }
    assert enforced == {a for a in expected if a[0] != "follower_spike"}
    shadow = world.shadow_alerts_sent()
    assert {a["mode"] for a in shadow} == {"shadow"}
    assert {(a["rule"], a["subject_id"], a["severity"], a["alert_id"]) for a in shadow} == (
        shadow_expected()
    )
    # The ids enforcing would give: the shadow topic holds what the alerts topic would have.
    assert shadow_expected() == {a for a in expected if a[0] == "follower_spike"}
    samples = {
        (sample.labels["rule"], sample.labels["severity"], sample.labels["mode"]): sample.value
        for metric in world.metrics.registry.collect()
        if metric.name == "reciprocity_alerts"
        for sample in metric.samples
        if sample.name == "reciprocity_alerts_total"
    }
    assert {key: n for key, n in samples.items() if key[0] == "follower_spike"} == {
        ("follower_spike", severity, "shadow"): float(n)
        for severity, n in Counter(a[2] for a in shadow_expected()).items()
    }
    assert {mode for (_, _, mode), n in samples.items() if n} == {"enforce", "shadow"}


@pytest.mark.parametrize("delivered", [False, True], ids=["lost", "sent-not-acked"])
def test_a_crash_at_a_shadow_alert_loses_none(delivered: bool) -> None:
    fault = Fault("shadow_alerts", 1, delivered)
    world = run_shadow(fault, persistent=True)
    assert fault.fired and world.restarts == 1
    shadow = {
        (a["rule"], a["subject_id"], a["severity"], a["alert_id"])
        for a in world.shadow_alerts_sent()
    }
    assert shadow == shadow_expected()


# -- quotas: past a rule's quota, its alerts to the shadow topic -------------------------------

QUOTA_RULE = "unsolicited_retweet_request"
QUOTA = DetectionSettings(unsolicited_retweet_request={"quota_per_hour": 1})


@cache
def quota_expected() -> tuple[frozenset[tuple[str, str, str, str]], ...]:
    """What replay sends with a quota of one an hour: (enforced, diverted)."""
    lines, _, _ = traffic()
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    replayer = Replayer(QUOTA, lambda: 0, include_shadow=True)
    alerts = []
    for line in lines:
        event = decoder.decode(line)
        assert not isinstance(event, Rejection)
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())

    def keys(chosen: list[Any]) -> frozenset[tuple[str, str, str, str]]:
        return frozenset((a.rule, a.subject_id, a.severity.value, a.alert_id) for a in chosen)

    diverted = [a for a in alerts if isinstance(a, ShadowAlert)]
    assert diverted, "the traffic must raise the rule twice within an hour"
    return keys([a for a in alerts if not isinstance(a, ShadowAlert)]), keys(diverted)


def metric_samples(world: TwinWorld, name: str) -> dict[str, float]:
    return {
        sample.labels["rule"]: sample.value
        for metric in world.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == name
    }


def quota_world(partitions: int, fault: Fault | None = None, persistent: bool = False) -> TwinWorld:
    lines, _, _ = traffic()
    settings = Settings(detection=QUOTA, topics=TopicSettings(partitions=partitions))
    world = TwinWorld(settings, lines, persistent)
    asyncio.run(world.run(fault))
    return world


def assert_quotas_as_in_replay(world: TwinWorld) -> None:
    enforced, diverted = quota_expected()
    sent = {(a["rule"], a["subject_id"], a["severity"], a["alert_id"]) for a in world.alerts_sent()}
    assert sent == enforced
    shadow = world.shadow_alerts_sent()
    assert {(a["rule"], a["subject_id"], a["severity"], a["alert_id"]) for a in shadow} == diverted
    assert {(a["mode"], a["diverted_by"]) for a in shadow} == {("shadow", "quota")}


def test_past_its_quota_a_rules_alerts_go_to_the_shadow_topic_as_in_replay() -> None:
    """One partition: the quota stage sees the alerts in replay's order, so it sends, diverts
    and trips exactly the alerts replay does."""
    world = quota_world(1)
    enforced, diverted = quota_expected()
    assert any(a[0] == "rule_breaker_tripped" for a in enforced)
    assert_quotas_as_in_replay(world)
    assert metric_samples(world, "reciprocity_alerts_diverted_total") == {QUOTA_RULE: len(diverted)}
    # A series for the rule with a quota only; 0 or 1 at the end, as the stream left it.
    assert set(metric_samples(world, "reciprocity_rule_breaker_open")) == {QUOTA_RULE}
    # Counted once, where they were sent: by the quota stage.
    alerts_total = sum(
        sample.value
        for metric in world.metrics.registry.collect()
        if metric.name == "reciprocity_alerts"
        for sample in metric.samples
        if sample.name == "reciprocity_alerts_total"
    )
    assert alerts_total == len(world.alerts_sent()) + len(world.shadow_alerts_sent())


def assert_quota_held_across_partitions(world: TwinWorld, partitions: int) -> None:
    """Several partitions: a rule's alerts reach its quota partition in arrival order, not
    replay's event order, and stage 2's merge may open an episode on another event (another
    id and time, as without quotas). What holds: the same alerts raised, each hour's quota kept
    over all partitions, and one trip per hour past it, with the id of that hour."""
    enforced, diverted = quota_expected()
    # At-least-once: an alert sent again after a crash carries its first id.
    sent = list({a["alert_id"]: a for a in world.alerts_sent()}.values())
    shadow = list({a["alert_id"]: a for a in world.shadow_alerts_sent()}.values())
    raised = Counter((a["rule"], a["subject_id"], a["severity"]) for a in [*sent, *shadow])
    expected = Counter(a[:3] for a in enforced | diverted)
    del raised[("rule_breaker_tripped", QUOTA_RULE, "high")]
    del expected[("rule_breaker_tripped", QUOTA_RULE, "high")]
    assert raised == expected
    per_hour: Counter[tuple[bool, int]] = Counter()
    for payload, is_sent in [(a, True) for a in sent] + [(a, False) for a in shadow]:
        if payload["rule"] == QUOTA_RULE:
            at = parse_timestamp_ms(payload["window_end"])
            per_hour[(is_sent, at - at % HOUR_MS)] += 1
    hours = {hour for _, hour in per_hour}
    assert all(per_hour[(True, hour)] == 1 for hour in hours)  # a quota of one an hour
    trips = {a["alert_id"] for a in sent if a["rule"] == "rule_breaker_tripped"}
    assert trips == {
        trip_alert_id(QUOTA_RULE, "hour", hour) for hour in hours if per_hour[(False, hour)]
    }
    # Only the rule with a quota took the hop, all of it to its rule's partition.
    hopped = [
        (record.partition, item["rule"])
        for log in world.topics["quota"].logs
        for record in log
        for _, items in decode_message(record.value or b"")
        for item in items
    ]
    assert {rule for _, rule in hopped} == {QUOTA_RULE}
    assert {number for number, _ in hopped} == {partition_for(QUOTA_RULE, partitions)}


def test_with_several_partitions_a_rules_quota_holds_over_all_of_them() -> None:
    world = quota_world(4)
    assert_quota_held_across_partitions(world, 4)


# The quota stage's sends, and the upstream ones that feed it: (target, nth call).
QUOTA_CRASH_POINTS = [
    ("3. upstream outputs: quota-stage message", "quota", 2),
    ("3. quota outputs: alert", "alerts", 2),
    ("3. quota outputs: diverted alert", "shadow_alerts", 1),
    ("4. quota state: rule states", "changelog:quotas", 2),
    ("5. quota marker", "marker:quotas", 2),
]


@pytest.mark.parametrize(
    "persistent", [False, True], ids=["rebuilt-from-changelog", "store-survives"]
)
@pytest.mark.parametrize("delivered", [False, True], ids=["lost", "sent-not-acked"])
@pytest.mark.parametrize(
    ("step", "target", "nth"), QUOTA_CRASH_POINTS, ids=[p[0] for p in QUOTA_CRASH_POINTS]
)
def test_a_crash_at_each_step_of_the_quota_stage_changes_no_decision(
    step: str, target: str, nth: int, delivered: bool, persistent: bool
) -> None:
    fault = Fault(target, nth, delivered)
    world = quota_world(1, fault, persistent)
    assert fault.fired, f"{step}: the stream never reached the crash point"
    assert world.restarts == 1
    # The same alerts as replay, and no alert id that replay does not have: a re-sent alert
    # (at-least-once) carries its first id.
    assert_quotas_as_in_replay(world)


@pytest.mark.parametrize(
    ("step", "target", "nth"), QUOTA_CRASH_POINTS, ids=[p[0] for p in QUOTA_CRASH_POINTS]
)
def test_a_crash_in_the_quota_stage_with_several_partitions_keeps_the_quota(
    step: str, target: str, nth: int
) -> None:
    fault = Fault(target, nth, delivered=True)
    world = quota_world(4, fault)
    assert fault.fired
    assert_quota_held_across_partitions(world, 4)


def test_without_quotas_no_quota_stage_is_built() -> None:
    lines, _, _ = traffic()
    world = TwinWorld(Settings(topics=TopicSettings(partitions=1)), lines, persistent=False)
    topology = world.start()
    assert topology.quota is None and topology.tables.quotas is None
    assert len(topology.checkpointed) == 3
    asyncio.run(world.run(None))
    assert world.topics["quota"].values() == []
    assert world.changelogs["quotas"].logs == {}
    assert metric_samples(world, "reciprocity_rule_breaker_open") == {}
