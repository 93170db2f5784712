"""A send refused mid-run, for each thing the worker writes: the broker is told to deny Write on
one topic (a DENY ACL wins over the worker's ALLOW) while events keep coming. The worker must
end non-zero, not live on idle; once the DENY is gone, a restarted worker must have lost and
double-counted no event and raised every alert `replay` raises.

    ingest        → stage 1 topic, dead letters
    stage 1 agent → stage 2 topic, the actors table's changelog
    stage 2 agent → stage 3 topic
    the stages    → alerts
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.chaos import compare
from service.devtools.generate import generate_traffic
from tests.worker.harness import Worker, create_topics, produce, wait_drained
from tests.worker.secure_cluster import (
    PASSWORD,
    USER,
    SecureCluster,
    grant,
    run_acl_commands,
    secure_cluster,
    security_env,
    topics_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

# Malformed lines among the second half's events, so that ingest has dead letters to send.
MALFORMED = [b"{not json", b'{"event_type": "follow"}', b"\xff\xfe"] * 5


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    with secure_cluster(tmp_path_factory.mktemp("certificates")) as cluster:
        yield cluster


def write_acl(topic: str) -> list[str]:
    return ["--deny-principal", f"User:{USER}", "--operation", "Write", "--topic", topic]


@pytest.mark.parametrize(
    "refused",
    [
        "stage1-by-actor",
        "stage2-by-target",
        "stage3-by-requester",
        "actors-changelog",
        "alerts",
        "dead_letters",
    ],
)
def test_a_refused_send_ends_the_worker_and_its_restart_loses_nothing(
    secure: SecureCluster, tmp_path: Path, refused: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id, topics = f"refused-{suffix}", topics_for(suffix)
    admin = secure.kafka.bootstrap_servers  # the administrator's plaintext door
    create_topics(admin, topics.values(), partitions=2)
    grant(secure, app_id, topics)
    topic = topics.get(refused, f"{app_id}-{refused}")
    traffic = generate_traffic(5, users=500, organic_events=2_000)
    lines = [orjson.dumps(event) for event in traffic.events]
    half = len(lines) // 2

    first = Worker(admin, app_id, topics, 2, tmp_path, "first")
    first.env.update(security_env(secure))
    first.start()
    try:
        produce(admin, topics["events"], lines[:half])
        wait_drained(admin, app_id, topics["events"], timeout=120)
        run_acl_commands(secure.kafka, [["--add", *write_acl(topic)]])
        produce(admin, topics["events"], [*lines[half:], *MALFORMED])
        assert first.process is not None
        code = first.process.wait(timeout=120)
    finally:
        first.kill()
    log = first.log.read_text()
    assert code != 0, log[-3000:]
    assert f"not authorized: the cluster refused topic {topic} " in log, log[-3000:]
    assert PASSWORD not in log

    run_acl_commands(secure.kafka, [["--remove", "--force", *write_acl(topic)]])
    second = Worker(admin, app_id, topics, 2, tmp_path, "second")
    second.env.update(security_env(secure))
    second.start()
    try:
        wait_drained(admin, app_id, topics["events"], timeout=180)
        result = compare(admin, topics["alerts"], second, lines)
    finally:
        second.stop()
    assert result["alerts_expected"] > 0
    assert result["events_lost"] == 0, result
    assert result["events_double_counted"] == 0, result
    assert result["alerts_missing"] == [], result
    assert result["alerts_unexpected"] == [], result
