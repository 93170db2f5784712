"""SIGTERM ends a worker within 20 s, its brokers up or gone."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import orjson
import pytest

from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import LocalKafka
from tests.worker.harness import Worker, create_topics, produce

pytestmark = pytest.mark.kafka

GRACE_SECONDS = 20  # what the issue asks; compose and Kubernetes give 30


def busy_worker(bootstrap: str, workdir: Path) -> Worker:
    suffix = uuid.uuid4().hex[:8]
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    create_topics(bootstrap, [topics["events"]], partitions=2)
    worker = Worker(bootstrap, f"stop-{suffix}", topics, 2, workdir, "stop").start()
    lines = [orjson.dumps(event) for event in generate_traffic(5, organic_events=5_000).events]
    produce(bootstrap, topics["events"], lines)
    time.sleep(1)  # mid-stream
    return worker


def seconds_to_stop(worker: Worker) -> float:
    assert worker.process is not None
    started = time.monotonic()
    os.killpg(worker.process.pid, signal.SIGTERM)
    worker.process.wait(timeout=120)
    return time.monotonic() - started


def test_sigterm_with_the_broker_up(kafka: str, tmp_path: Path) -> None:
    worker = busy_worker(kafka, tmp_path)
    try:
        assert seconds_to_stop(worker) < GRACE_SECONDS
        assert worker.process is not None and worker.process.returncode == 0
    finally:
        worker.kill()


def test_sigterm_with_the_broker_gone(tmp_path: Path) -> None:
    with LocalKafka() as broker:
        worker = busy_worker(broker.bootstrap_servers, tmp_path)
        try:
            broker.stop()
            time.sleep(5)  # the worker notices: fetches and sends fail, clients reconnect
            assert seconds_to_stop(worker) < GRACE_SECONDS
            # A line per kind of failure and a reminder every 5 s, not thousands a second.
            errors = [line for line in worker.log.read_text().splitlines() if "[ERROR]" in line]
            assert len(errors) < 100, f"{len(errors)} error lines"
        finally:
            worker.kill()
