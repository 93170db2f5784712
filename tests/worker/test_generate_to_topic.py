"""`reciprocity generate --topic`: the events land on the topic, keyed by actor, as in a file."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from tests.worker.harness import create_topics, kcat

pytestmark = pytest.mark.kafka


def test_generated_events_are_sent_to_the_topic_keyed_by_actor(kafka: str, tmp_path: Path) -> None:
    topic = f"generated-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=2)
    options = ["--seed", "3", "--users", "400", "--organic-events", "300", "--hours", "2"]
    command = [sys.executable, "-m", "service", "generate", *options]
    env = {**os.environ, "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": kafka}
    subprocess.run([*command, "--topic", topic], env=env, check=True, timeout=120)
    subprocess.run([*command, "-o", str(tmp_path / "events.jsonl")], check=True, timeout=120)

    expected = (tmp_path / "events.jsonl").read_bytes().splitlines()
    # key TAB value, one message per line, then stop at the end of the topic
    lines = kcat("-C", "-b", kafka, "-t", topic, "-e", "-q", "-K", "\t").splitlines()
    received = [line.split(b"\t", 1) for line in lines]
    assert sorted(value for _, value in received) == sorted(expected)
    assert all(orjson.loads(value)["actor_id"].encode() == key for key, value in received)
