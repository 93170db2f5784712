"""The bridge between a local Jetstream stand-in and a real broker.

The stand-in plays tests/bridge/fixtures/stream.jsonl (line i at time_us t(i), garbage lines
without one), drops the first connection after line 16 once the bridge has acknowledged it,
and on the reconnect plays from the cursor the bridge asks for. The cursor rewinds 3 s, so
lines 13 to 16 are read twice:

    line   0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16 | 17 18 19 20 21 22 23
    conn 1 ──────────────────────────────────────────────────┤ dropped (cursor t(16))
    conn 2                                         13 ─────────────────────────── 23
                                                   └ t(16) − 3 s
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.bridge.jetstream import BridgeFailure, JetstreamBridge
from service.core.decoding import EventDecoder
from service.core.models import Event
from service.devtools.local_kafka import free_port
from service.settings import BridgeSettings, InputSettings, KafkaSettings, Settings, TopicSettings
from tests.bridge.jetstream_fixtures import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FRANK,
    T0,
    fixture_lines,
    t,
)
from tests.bridge.jetstream_server import JetstreamPlayer, spawn_bridge, wait_until
from tests.worker.harness import create_topics

pytestmark = pytest.mark.kafka

PARTITIONS = 3
REWIND_SECONDS = 3
DECODER = EventDecoder(InputSettings(), lambda: T0 // 1000 + 3_600_000)
COLLECTIONS = ["app.bsky.graph.follow", "app.bsky.feed.repost", "app.bsky.feed.post"]

# What the stream means, by line: (type, actor, target).
EVENTS_BY_LINE = {
    2: [("follow", ALICE, BOB)],
    4: [("follow", CAROL, BOB)],
    12: [("unfollow", ALICE, BOB)],
    13: [("retweet", DAVE, BOB)],
    14: [("mention", FRANK, ALICE), ("mention", FRANK, BOB), ("mention", FRANK, CAROL)],
    15: [("reply", ERIN, CAROL)],
    16: [("follow", ALICE, DAVE)],
    17: [("reply", BOB, ALICE)],
    18: [("follow", BOB, ALICE)],
    19: [("unfollow", ALICE, DAVE)],  # its follow was on line 16, read on the first connection
    20: [("mention", CAROL, CAROL)],
    21: [("post", DAVE, None)],
}
READ_TWICE = range(13, 17)


@dataclass
class Run:
    messages: list[tuple[bytes | None, bytes]]
    queries: list[list[tuple[str, str]]]
    sent: list[list[int]]
    metrics: str
    cursor_file: str
    cursor: int | None
    log: list[str]


def bridge_settings(kafka: str, topic: str, player: JetstreamPlayer, cursor: Path) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka),
        topics=TopicSettings(events=(topic,)),
        bridge=BridgeSettings(
            jetstream_url=player.url,
            cursor_path=cursor,
            cursor_rewind_seconds=REWIND_SECONDS,
            max_frame_bytes=1024,
            metrics_bind="127.0.0.1",
            metrics_port=free_port(),
            reconnect_min_seconds=0.05,
            reconnect_max_seconds=0.2,
        ),
    )


async def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        messages = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                messages += [(record.key, record.value) for record in records]
        return messages
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def run(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    topic = f"bridge-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=PARTITIONS)
    cursor_path = tmp_path_factory.mktemp("bridge") / "jetstream.cursor"
    log: list[str] = []

    async def scenario() -> Run:
        bridge: JetstreamBridge | None = None
        player = JetstreamPlayer(
            fixture_lines("stream.jsonl"),
            drop_first_after=17,
            drop_when=lambda: bridge is not None and bridge.cursor == t(16),
        )
        await player.start()
        settings = bridge_settings(kafka, topic, player, cursor_path)
        bridge = JetstreamBridge(settings, log=log.append)
        running = asyncio.create_task(bridge.run())
        try:
            await wait_until(lambda: bridge.cursor == t(23) and len(player.queries) == 2)
            port = settings.bridge.metrics_port
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/metrics") as response,
            ):
                metrics = await response.text()
        finally:
            bridge.stop()
            await asyncio.wait_for(running, 60)
            await player.stop()
        return Run(
            messages=await read_topic(kafka, topic),
            queries=player.queries,
            sent=player.sent,
            metrics=metrics,
            cursor_file=cursor_path.read_text(),
            cursor=bridge.cursor,
            log=log,
        )

    yield asyncio.run(scenario())


def events(run: Run) -> list[Event]:
    decoded = [DECODER.decode(value) for _, value in run.messages]
    assert all(isinstance(event, Event) for event in decoded), decoded
    return [event for event in decoded if isinstance(event, Event)]


def test_the_first_connection_has_no_cursor_and_the_reconnect_the_rewound_one(run: Run) -> None:
    first, second = run.queries
    for query in (first, second):
        assert [v for k, v in query if k == "wantedCollections"] == COLLECTIONS
        assert ("maxMessageSizeBytes", "1024") in query
    assert "cursor" not in dict(first)
    assert dict(second)["cursor"] == str(t(16) - REWIND_SECONDS * 1_000_000)
    assert run.sent[0] == list(range(17))
    assert run.sent[1] == list(range(13, 24))
    assert any("connection lost" in line for line in run.log)


def test_every_event_arrives_keyed_by_its_actor_and_passes_the_decoder(run: Run) -> None:
    decoded = events(run)
    assert [key for key, _ in run.messages] == [event.actor_id.encode() for event in decoded]
    expected = Counter(e for line in EVENTS_BY_LINE.values() for e in line)
    expected.update(e for line in READ_TWICE for e in EVENTS_BY_LINE.get(line, []))
    assert Counter((e.type.value, e.actor_id, e.target_id) for e in decoded) == expected


def test_events_read_again_after_the_reconnect_carry_the_same_ids(run: Run) -> None:
    decoded = events(run)
    ids = Counter(event.event_id for event in decoded)
    distinct = sum(len(line) for line in EVENTS_BY_LINE.values())
    resent = sum(len(EVENTS_BY_LINE.get(line, [])) for line in READ_TWICE)
    assert len(ids) == distinct  # no new ids
    assert sorted(ids.values()) == [1] * (distinct - resent) + [2] * resent
    twice = {(e.type.value, e.actor_id, e.target_id) for e in decoded if ids[e.event_id] == 2}
    assert twice == {e for line in READ_TWICE for e in EVENTS_BY_LINE.get(line, [])}


def test_the_cursor_file_holds_the_last_acknowledged_time_us(run: Run) -> None:
    assert run.cursor_file == f"{t(23)}\n"  # line 23, an account frame: no event, but a time
    assert run.cursor == t(23)


def samples(metrics: str, name: str) -> dict[str, float]:
    """label value (or "" without labels) -> sample value, of one metric."""
    found = {}
    for line in metrics.splitlines():
        match = re.fullmatch(rf'{name}(?:{{\w+="([^"]*)"}})? (\S+)', line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def test_garbage_and_unmapped_frames_are_counted_by_reason_and_skipped(run: Run) -> None:
    skipped = {
        k: v
        for k, v in samples(run.metrics, "reciprocity_bridge_frames_skipped_total").items()
        if v
    }
    assert skipped == {
        "identity": 1,  # line 0
        "account": 2,  # 1, 23
        "invalid_json": 2,  # 3, 22
        "not_an_object": 1,  # 5
        "unknown_kind": 1,  # 6
        "unknown_collection": 1,  # 7
        "invalid_did": 1,  # 8
        "unknown_follow": 1,  # 9
        "not_mapped": 1,  # 10
        "oversized": 1,  # 11
    }  # fmt: skip
    frames = samples(run.metrics, "reciprocity_bridge_frames_total")
    assert frames == {"commit": 20, "identity": 1, "account": 2, "unknown": 5}
    assert sum(frames.values()) == len(run.sent[0]) + len(run.sent[1])


def test_the_metrics_count_events_reconnects_and_the_cursor(run: Run) -> None:
    by_type = samples(run.metrics, "reciprocity_bridge_events_total")
    assert by_type == {
        "follow": 5, "unfollow": 2, "retweet": 2, "reply": 3, "mention": 7, "post": 1
    }  # fmt: skip
    assert sum(by_type.values()) == len(run.messages)
    assert samples(run.metrics, "reciprocity_bridge_reconnects_total") == {"": 1}
    assert samples(run.metrics, "reciprocity_bridge_cursor") == {"": t(23)}
    (lag,) = samples(run.metrics, "reciprocity_bridge_cursor_lag_seconds").values()
    assert lag > 0  # the fixtures are from May 2026


def test_the_metrics_page_passes_promtool(run: Run) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run scripts/install-system-packages")
    result = subprocess.run(
        ["promtool", "check", "metrics"],
        input=run.metrics.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_restart_resumes_before_the_saved_cursor_and_from_now_ignores_it(
    kafka: str, tmp_path: Path
) -> None:
    topic = f"bridge-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=PARTITIONS)
    cursor_path = tmp_path / "jetstream.cursor"
    cursor_path.write_text(f"{t(20)}\n")

    async def first_query(from_now: bool) -> list[tuple[str, str]]:
        player = await JetstreamPlayer(fixture_lines("stream.jsonl")).start()
        bridge = JetstreamBridge(
            bridge_settings(kafka, topic, player, cursor_path), from_now=from_now, log=print
        )
        running = asyncio.create_task(bridge.run())
        try:
            await wait_until(lambda: bridge.cursor == t(23))
        finally:
            bridge.stop()
            await asyncio.wait_for(running, 60)
            await player.stop()
        return player.queries[0]

    resumed = asyncio.run(first_query(from_now=False))
    assert dict(resumed)["cursor"] == str(t(20) - REWIND_SECONDS * 1_000_000)
    assert cursor_path.read_text() == f"{t(23)}\n"
    cursor_path.write_text(f"{t(20)}\n")
    assert "cursor" not in dict(asyncio.run(first_query(from_now=True)))
    assert cursor_path.read_text() == f"{t(23)}\n"  # saved as it goes, all the same


async def create_topic(bootstrap: str, name: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=configs)])
    finally:
        await admin.close()


def test_a_kafka_refusal_ends_the_command_non_zero_with_one_line_and_no_cursor_past_it(
    kafka: str, tmp_path: Path
) -> None:
    # Messages over 100 bytes refused by the topic: Kafka's MESSAGE_TOO_LARGE, which no retry
    # fixes.
    topic = f"bridge-{uuid.uuid4().hex[:8]}"
    asyncio.run(create_topic(kafka, topic, {"max.message.bytes": "100"}))
    cursor_path = tmp_path / "jetstream.cursor"

    async def scenario() -> tuple[int, bytes]:
        player = await JetstreamPlayer(fixture_lines("stream.jsonl")).start()
        process = await spawn_bridge(
            kafka, topic, player.url, cursor_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), 120)
        finally:
            if process.returncode is None:
                process.kill()
            await player.stop()
        assert process.returncode is not None
        return process.returncode, err

    code, err = asyncio.run(scenario())
    text = err.decode()
    assert code == 1, text
    assert "Traceback" not in text
    (reason,) = [line for line in text.splitlines() if line.startswith("Error:")]
    assert f"did not take an event for {topic!r}" in reason
    assert "MessageSizeTooLarge" in reason
    # The first event is on line 2: the cursor may pass lines 0 and 1 (no events), not it.
    assert not cursor_path.exists() or int(cursor_path.read_text()) < t(2)


def test_a_missing_topic_ends_the_command_non_zero_naming_it(kafka: str, tmp_path: Path) -> None:
    topic = f"missing-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "RECIPROCITY_TOPICS__EVENTS": topic,
    }
    result = subprocess.run(
        [sys.executable, "-m", "service", "bridge", "jetstream"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert f"Error: the topic {topic!r} (RECIPROCITY_TOPICS__EVENTS) cannot be used" in err
    assert "Traceback" not in err


def test_sigterm_stops_the_command_cleanly_with_its_cursor_saved(
    kafka: str, tmp_path: Path
) -> None:
    topic = f"bridge-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=PARTITIONS)
    cursor_path = tmp_path / "jetstream.cursor"

    async def scenario() -> tuple[int, str]:
        player = await JetstreamPlayer(fixture_lines("stream.jsonl")).start()
        process = await spawn_bridge(
            kafka, topic, player.url, cursor_path, stderr=asyncio.subprocess.PIPE
        )
        try:
            # Every frame read and acknowledged: the cursor is saved within a second.
            await wait_until(
                lambda: cursor_path.exists() and cursor_path.read_text() == f"{t(23)}\n"
            )
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
            await player.stop()
        assert process.returncode is not None
        return process.returncode, err.decode()

    code, err = asyncio.run(scenario())
    assert code == 0, err
    assert f"stopped; cursor {t(23)} saved in {cursor_path}" in err
    assert "Traceback" not in err
    assert cursor_path.read_text() == f"{t(23)}\n"


def test_a_cursor_that_cannot_be_written_ends_the_bridge(kafka: str, tmp_path: Path) -> None:
    topic = f"bridge-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=PARTITIONS)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")

    async def scenario() -> None:
        player = await JetstreamPlayer(fixture_lines("stream.jsonl")).start()
        settings = bridge_settings(kafka, topic, player, not_a_directory / "jetstream.cursor")
        try:
            await asyncio.wait_for(JetstreamBridge(settings, from_now=True, log=print).run(), 60)
        finally:
            await player.stop()

    with pytest.raises(BridgeFailure, match=r"cannot write the cursor file .*CURSOR_PATH"):
        asyncio.run(scenario())
