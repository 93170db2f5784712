"""The checkpoint's crash points, without Kafka: for each numbered step of `Checkpoint.run` (and
ingest's hand-over), the process dies there once mid-stream, restarts from what was stored,
and finishes the stream. Alerts and every account's counts must equal a replay."""

from __future__ import annotations

import asyncio
from functools import cache

import orjson
import pytest

from service.core.decoding import EventDecoder, Rejection
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.settings import Settings, TopicSettings
from tests.runtime.twin import Fault, TwinWorld

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


@pytest.mark.parametrize(("step", "target", "nth"), CRASH_POINTS, ids=[p[0] for p in CRASH_POINTS])
def test_a_crash_with_several_partitions_changes_no_count(step: str, target: str, nth: int) -> None:
    # Stage 2 merges actor partitions in arrival order, so the event opening an episode (and
    # the alert id) may differ from replay's; subjects, severities and counts may not.
    fault = Fault(target, nth, delivered=True)
    world = run(fault, persistent=False, partitions=4)
    assert fault.fired
    assert_same_as_replay(world, exact_ids=False)
