"""Real processes around a real broker: workers, producers and readers for end-to-end tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.core.decoding import EventDecoder, Rejection
from service.core.models import Alert
from service.core.replay import Replayer
from service.devtools.local_kafka import free_port
from service.settings import DetectionSettings, Settings


class Worker:
    """`reciprocity worker` as a user runs it, in its own process group."""

    def __init__(
        self,
        bootstrap: str,
        app_id: str,
        topics: dict[str, str],
        partitions: int,
        workdir: Path,
        name: str,
        store: str = "memory://",
    ) -> None:
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.env = {
            **os.environ,
            "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "RECIPROCITY_WORKER__APP_ID": app_id,
            "RECIPROCITY_WORKER__WEB_PORT": str(self.port),
            "RECIPROCITY_WORKER__WEB_HOST": "127.0.0.1",
            "RECIPROCITY_WORKER__DATA_DIR": str(workdir / f"{name}-data"),
            "RECIPROCITY_WORKER__STORE": store,
            "RECIPROCITY_WORKER__LOG_LEVEL": "warning",
            "RECIPROCITY_TOPICS__EVENTS": topics["events"],
            "RECIPROCITY_TOPICS__ALERTS": topics["alerts"],
            # A test's own shadow topic, unless it names one: never the shared default.
            "RECIPROCITY_TOPICS__SHADOW_ALERTS": topics.get(
                "shadow_alerts", f"{topics['alerts']}.shadow"
            ),
            "RECIPROCITY_TOPICS__DEAD_LETTERS": topics["dead_letters"],
            "RECIPROCITY_TOPICS__PARTITIONS": str(partitions),
            # Generated traffic packs a week into seconds, so one default ingest batch (4,000
            # events) spans most of a day of event time, and a follow-back flagged at stage 2
            # lands after stage 1 has already read the relation for the unfollow that came
            # hours later. Real traffic puts ~0.5 s of event time in a batch. Smaller batches
            # keep the stages as close in event time as real traffic does.
            "RECIPROCITY_WORKER__BATCH_MAX_EVENTS": "200",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> Worker:
        """Start the process and return at once; `start` also waits until it is ready."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def start(self, timeout: float = 120.0) -> Worker:
        self.launch()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            status, _ = self.get("/readyz")
            if status == 200:
                return self
            time.sleep(0.5)
        raise TimeoutError(f"worker not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def get(self, path: str) -> tuple[int, bytes]:
        return http_get(self.port, path)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def http_get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of a local GET; status 0 while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
            )
        finally:
            await admin.close()

    asyncio.run(run())


def produce(bootstrap: str, topic: str, lines: Iterable[bytes]) -> int:
    """Each line a message keyed by its actor_id when it has one (as producers should)."""

    async def run() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        sent = 0
        try:
            for line in lines:
                key = None
                with contextlib.suppress(Exception):  # malformed lines go out unkeyed
                    key = str(orjson.loads(line)["actor_id"]).encode()
                await producer.send(topic, line, key=key)
                sent += 1
            await producer.flush()
        finally:
            await producer.stop()
        return sent

    return asyncio.run(run())


def kcat(*args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["kcat", *args], input=stdin, capture_output=True, timeout=120, check=True
    )
    return result.stdout


def read_all(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every message of a topic, read with kcat, as JSON objects."""
    out = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\\n")
    return [orjson.loads(line) for line in out.splitlines() if line.strip()]


def consumer_lag(bootstrap: str, group: str, topics: list[str]) -> int:
    return sum(partition_lags(bootstrap, group, topics).values())


def partition_lags(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """End offset minus the group's committed offset, per "topic[partition]"; {"?": -1}
    while the topics have no partitions yet."""

    async def run() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await admin.start()
        await consumer.start()
        try:
            metadata = await consumer._client.fetch_all_metadata()
            committed = await admin.list_consumer_group_offsets(group)
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in (metadata.partitions_for_topic(topic) or set())
            ]
            if not partitions:
                return {"?": -1}
            ends = await consumer.end_offsets(partitions)
            lags = {}
            for tp in partitions:
                done = committed.get(tp)
                lags[f"{tp.topic}[{tp.partition}]"] = ends[tp] - (
                    done.offset if done is not None else 0
                )
            return lags
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(run())


def wait_drained(bootstrap: str, app_id: str, events_topic: str, timeout: float = 300) -> None:
    """Until the worker's two consumer groups have consumed and committed everything, twice
    in a row: ingest (`<app_id>-ingest`) the events topic, the stages (`<app_id>`) theirs."""
    groups = {
        f"{app_id}-ingest": [events_topic],
        app_id: [
            *(f"{app_id}-stage{n}" for n in ("1-by-actor", "2-by-target", "3-by-requester")),
            f"{app_id}-quota-by-rule",  # empty unless a rule has a quota
        ],
    }
    deadline = time.monotonic() + timeout
    zero_seen = 0
    lags: dict[str, int] = {}
    while time.monotonic() < deadline:
        lags = {group: consumer_lag(bootstrap, group, topics) for group, topics in groups.items()}
        zero_seen = zero_seen + 1 if not any(lags.values()) else 0
        if zero_seen >= 2:
            return
        time.sleep(2)
    lagging = {
        group: {tp: lag for tp, lag in partition_lags(bootstrap, group, topics).items() if lag}
        for group, topics in groups.items()
    }
    raise TimeoutError(f"consumer lag still {lags}: {lagging}")


def fresh_topics(name: str) -> tuple[str, dict[str, str]]:
    """An app id and the topics of a worker of its own: events, alerts, shadow alerts, DLQ."""
    suffix = uuid.uuid4().hex[:8]
    return f"{name}-{suffix}", {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "shadow_alerts": f"shadow-alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }


def replayed_lines(lines: Iterable[bytes], settings: DetectionSettings) -> list[Alert]:
    """What `reciprocity replay --include-shadow` gives for these input lines."""
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    replayer = Replayer(settings, lambda: 0, include_shadow=True)
    alerts: list[Alert] = []
    for line in lines:
        event = decoder.decode(line)
        if not isinstance(event, Rejection):
            alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return alerts
