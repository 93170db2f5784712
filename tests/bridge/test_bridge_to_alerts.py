"""A follower purchase on Bluesky, from Jetstream frames to `reciprocity alerts`.

The frames (tests/bridge/purchase_frames.py, whose docstring draws the timeline): a quiet
account's six hours of organic activity, then twenty accounts never seen before following it,
one every 25 s. First without Kafka: the bridge's mapping of those frames, through replay,
alerts the purchase exactly once, and the organic frames alone do not alert. Then end to end
on a real broker: the local Jetstream stand-in plays the frames to `reciprocity bridge
jetstream`, a real worker reads the events topic, and `reciprocity alerts` shows the one alert,
the same as replay's.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.bridge.jetstream_mapping import FollowStore, Outgoing, read_frame
from service.core.decoding import EventDecoder
from service.core.models import Alert, Event, Severity, format_timestamp
from service.core.replay import Replayer
from service.settings import DetectionSettings, InputSettings
from tests.bridge.jetstream_server import JetstreamPlayer, spawn_bridge, wait_until
from tests.bridge.purchase_frames import (
    BOUGHT,
    FOLLOWERS_IT_TAKES,
    ORGANIC,
    ORGANIC_FOLLOWERS,
    TARGET,
    bought_follow_time_us,
    event_time_ms,
    last_time_us,
    organic_frames,
    purchase_frames,
)
from tests.worker.harness import Worker, create_topics, read_all, wait_drained

MAX_FRAME_BYTES = 1_048_576  # the bridge's default
DAY_MS = 86_400_000
# Processing time a day after the frames: the decoder refuses events from the future.
CLOCK_MS = bought_follow_time_us(len(BOUGHT)) // 1000 + DAY_MS
DECODER = EventDecoder(InputSettings(), lambda: CLOCK_MS)

LINES = purchase_frames()
# The 15th bought follow's event time: where the 10-minute window fires (the timeline).
FIRES_AT_MS = event_time_ms(bought_follow_time_us(FOLLOWERS_IT_TAKES - 1))


def mapped(lines: list[bytes]) -> list[Outgoing]:
    """What the bridge sends for the frames, in order (its mapping, no I/O)."""
    store = FollowStore(1000)
    sent: list[Outgoing] = []
    for raw in lines:
        outcome = read_frame(raw, store, MAX_FRAME_BYTES)
        assert outcome.skipped in (None, "identity"), (outcome.skipped, raw)
        store.apply(outcome.follow_change)
        sent += outcome.events
    return sent


def replay(values: Iterable[bytes]) -> tuple[list[Alert], Replayer]:
    """`reciprocity replay` over the messages, as the CLI runs it: decode, submit, flush."""
    replayer = Replayer(DetectionSettings(), lambda: CLOCK_MS)
    alerts: list[Alert] = []
    for value in values:
        event = DECODER.decode(value)
        assert isinstance(event, Event), (event, value)
        alerts += replayer.submit(event)
    alerts += replayer.flush()
    return alerts, replayer


def assert_is_the_purchase_alert(alert: Alert) -> None:
    """The alert the purchase must raise: the target, the 10-minute window at the 15th bought
    follow, and the 15 bought followers of that window named, in order."""
    assert (alert.rule, alert.subject_id, alert.severity) == (
        "follower_spike",
        TARGET,
        Severity.MEDIUM,
    )
    assert alert.window_end == format_timestamp(FIRES_AT_MS)
    assert alert.window_start == format_timestamp(FIRES_AT_MS - 600_000)
    assert alert.related_ids == list(BOUGHT[:FOLLOWERS_IT_TAKES])
    evidence = alert.evidence
    assert (evidence["window"], evidence["window_seconds"]) == ("10 min", 600)
    assert (evidence["count"], evidence["low_quality_count"]) == (15, 15)
    assert evidence["low_quality_share"] == 1.0
    assert evidence["threshold"] == 15.0  # the floor, fully relieved: 30 × (1 − 0.5)
    assert evidence["named_followers"] == 15
    # Judged by the stream alone: no snapshot, so no profile sign, only "only follows".
    assert evidence["sample_follower_signs"] == {
        "fresh_account": 0,
        "follows_far_more_than_followed": 0,
        "no_posts": 0,
        "follows_at_high_rate": 0,
        "only_follows_in_the_stream": 15,
        "follows_in_lockstep": 0,
    }
    assert evidence["episode_started_at"] == alert.window_end


# -- without Kafka: the bridge's mapping through replay -------------------------------------


def test_the_frames_map_to_the_scripted_events() -> None:
    sent = mapped(LINES)
    assert Counter(o.type for o in sent) == {"post": 9, "reply": 7, "retweet": 1, "follow": 23}
    follows = [(o.event["actor_id"], o.event["target_id"]) for o in sent if o.type == "follow"]
    assert follows == [(a, TARGET) for a in (*ORGANIC_FOLLOWERS, *BOUGHT)]
    # Each bought follow at its record's createdAt, 25 s apart.
    bought_at = [o.event["occurred_at"] for o in sent if o.event["actor_id"] in BOUGHT]
    assert bought_at == [
        format_timestamp(event_time_ms(bought_follow_time_us(n))) for n in range(len(BOUGHT))
    ]
    # Every organic account engages before it follows: none looks bought.
    for account in ORGANIC_FOLLOWERS:
        kinds = [o.type for o in sent if o.event["actor_id"] == account]
        assert kinds.index("follow") > 0, account
    assert len({o.event["event_id"] for o in sent}) == len(sent)


def test_replay_alerts_the_purchase_once_on_the_target() -> None:
    alerts, replayer = replay(o.value for o in mapped(LINES))
    assert len(alerts) == 1, [(a.rule, a.subject_id) for a in alerts]
    assert_is_the_purchase_alert(alerts[0])
    assert replayer.stats.suppressed == len(BOUGHT) - FOLLOWERS_IT_TAKES  # same episode


@pytest.mark.parametrize(
    ("bought", "alerts"), [(FOLLOWERS_IT_TAKES - 1, 0), (FOLLOWERS_IT_TAKES, 1)]
)
def test_it_takes_fifteen_bought_followers_in_ten_minutes(bought: int, alerts: int) -> None:
    # The first `bought` follows of the purchase (frame minutes; events 350 ms earlier):
    #
    #   minute        355:25  355:50      360:00          365:25  365:50
    #   bought follow                      n=0 …………………………… n=13    n=14
    #   window at n=13  (───────────────────────────────────] 14 follows, all bought: under
    #                                                          the relieved floor of 15
    #   window at n=14          (───────────────────────────────────] 15: the alert
    #
    # The target's 3 organic follows of the 6 h before make a baseline of 0.095 follows per
    # window: ×8, far under the floor, which is all the bar is.
    found, _ = replay(o.value for o in mapped(purchase_frames(bought)))
    assert [(a.rule, a.subject_id) for a in found] == [("follower_spike", TARGET)] * alerts


def test_the_organic_frames_alone_raise_no_alert() -> None:
    sent = mapped(organic_frames())
    assert len(sent) == 20
    assert {o.event["actor_id"] for o in sent} == {TARGET, *ORGANIC}
    alerts, replayer = replay(o.value for o in sent)
    assert alerts == []
    assert replayer.stats.suppressed == 0
    assert sum(replayer.stats.events_by_type.values()) == 20  # all counted, none refused


# -- end to end: Jetstream stand-in → bridge → Kafka → worker → `reciprocity alerts` --------


@dataclass
class Run:
    bridge_code: int
    bridge_log: str
    events: list[dict[str, Any]]  # the events topic, in order
    metrics: str  # the worker's /metrics once it has drained
    shown_json: list[dict[str, Any]]  # `reciprocity alerts --from-beginning --exit --json`
    shown_lines: list[str]  # the same without --json
    published: list[dict[str, Any]]  # the alerts topic as it is


async def bridge_the_frames(
    bootstrap: str, topic: str, lines: list[bytes], cursor: Path, log: Path
) -> int:
    """`reciprocity bridge jetstream` against the stand-in playing `lines`, until its cursor
    file holds the last frame's time (every event acknowledged by Kafka), then SIGTERM."""
    player = await JetstreamPlayer(lines).start()
    with open(log, "wb") as err:
        process = await spawn_bridge(bootstrap, topic, player.url, cursor, stderr=err)
    done = f"{last_time_us(lines)}\n"
    try:
        await wait_until(
            lambda: (
                process.returncode is not None or (cursor.exists() and cursor.read_text() == done)
            ),
            timeout=30,
        )
        assert process.returncode is None, log.read_text()
        process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await player.stop()


def wait_ready(worker: Worker, timeout: float = 60.0) -> None:
    assert worker.process is not None
    deadline = time.monotonic() + timeout
    while worker.get("/readyz")[0] != 200:
        assert worker.process.poll() is None, worker.log.read_text()[-3000:]
        assert time.monotonic() < deadline, worker.log.read_text()[-3000:]
        time.sleep(0.1)


def alerts_command(bootstrap: str, topic: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service", "alerts", "--from-beginning", "--exit", *args],
        env={
            "PATH": "/usr/bin:/bin",
            "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "RECIPROCITY_TOPICS__ALERTS": topic,
        },
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


@pytest.fixture(scope="module")
def run(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"bluesky-{suffix}"
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    # One partition per stage: every stage sees the events in event-time order, as replay
    # does, so the alert must be the same (test_end_to_end.py does the same).
    create_topics(kafka, [topics["events"]], partitions=1)
    workdir = tmp_path_factory.mktemp("bridge-to-alerts")
    worker = Worker(kafka, app_id, topics, 1, workdir, "worker").launch()  # starts meanwhile
    try:
        bridge_log = workdir / "bridge.log"
        code = asyncio.run(
            bridge_the_frames(
                kafka, topics["events"], LINES, workdir / "jetstream.cursor", bridge_log
            )
        )
        wait_ready(worker)
        wait_drained(kafka, app_id, topics["events"], timeout=60)
        status, metrics = worker.get("/metrics")
        assert status == 200
        shown_json = [
            orjson.loads(line)
            for line in alerts_command(kafka, topics["alerts"], "--json").splitlines()
        ]
        shown_lines = alerts_command(kafka, topics["alerts"]).splitlines()
        yield Run(
            bridge_code=code,
            bridge_log=bridge_log.read_text(),
            events=read_all(kafka, topics["events"]),
            metrics=metrics.decode(),
            shown_json=shown_json,
            shown_lines=shown_lines,
            published=read_all(kafka, topics["alerts"]),
        )
    finally:
        worker.stop()


def samples(metrics: str, name: str) -> dict[str, float]:
    """The labels (as written) → value of one metric's samples."""
    found = {}
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


@pytest.mark.kafka
def test_the_bridge_sends_every_mapped_event_and_stops_cleanly(run: Run) -> None:
    assert run.bridge_code == 0, run.bridge_log
    assert f"stopped; cursor {last_time_us(LINES)} saved" in run.bridge_log
    assert "Traceback" not in run.bridge_log
    # No reconnect, one partition: the topic holds what the mapping says, once, in order.
    assert run.events == [o.event for o in mapped(LINES)]


@pytest.mark.kafka
def test_the_worker_applies_every_event_and_raises_one_alert(run: Run) -> None:
    applied = samples(run.metrics, "reciprocity_events_total")
    assert sum(applied.values()) == len(run.events) == 40
    assert applied['{type="follow"}'] == 23
    assert not any(samples(run.metrics, "reciprocity_events_rejected_total").values())
    assert not any(samples(run.metrics, "reciprocity_events_late_total").values())
    sent = {k: v for k, v in samples(run.metrics, "reciprocity_alerts_total").items() if v}
    assert sent == {'{mode="enforce",rule="follower_spike",severity="medium"}': 1.0}
    suppressed = samples(run.metrics, "reciprocity_alerts_suppressed_total")
    assert suppressed['{rule="follower_spike"}'] == len(BOUGHT) - FOLLOWERS_IT_TAKES


@pytest.mark.kafka
def test_reciprocity_alerts_shows_one_follower_spike_on_the_target(run: Run) -> None:
    assert len(run.shown_json) == 1, run.shown_json
    (payload,) = run.shown_json
    assert_is_the_purchase_alert(Alert.model_validate(payload))
    assert not set(payload["related_ids"]) & set(ORGANIC)
    # Nothing was hidden by de-duplication: the topic holds that one alert, once.
    assert [a["alert_id"] for a in run.published] == [payload["alert_id"]]


@pytest.mark.kafka
def test_the_readable_line_has_the_time_rule_subject_and_severity(run: Run) -> None:
    assert len(run.shown_lines) == 1, run.shown_lines
    (line,) = run.shown_lines
    window_end = format_timestamp(FIRES_AT_MS).replace("T", " ").removesuffix("Z")
    assert line.startswith(window_end)
    assert re.search(rf"\bMEDIUM\s+follower_spike\s+{re.escape(TARGET)}\s", line), line
    assert f"{TARGET} gained 15 followers in 10 min" in line


@pytest.mark.kafka
def test_the_worker_and_replay_give_the_same_alert(run: Run) -> None:
    # Replay over what the worker read (the events topic) and over the bridge's mapping.
    from_topic, _ = replay(orjson.dumps(event) for event in run.events)
    from_mapping, _ = replay(o.value for o in mapped(LINES))
    worker = [Alert.model_validate(payload) for payload in run.shown_json]
    assert len(from_mapping) == 1  # the purchase, alerted
    assert [a.alert_id for a in worker] == [a.alert_id for a in from_topic]
    assert [a.alert_id for a in from_topic] == [a.alert_id for a in from_mapping]
    # detected_at is processing time; everything else, evidence included, is the same.
    assert [a.model_dump(exclude={"detected_at"}) for a in worker] == [
        a.model_dump(exclude={"detected_at"}) for a in from_topic
    ]
