"""One worker killed with SIGKILL while ingest is handing a backlog over, and restarted:
ingest commits only what stage 1 acknowledged, so nothing is lost and nothing counted twice."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from service.devtools.generate import generate_traffic
from tests.worker.harness import Worker, create_topics, produce, read_all, wait_drained
from tests.worker.test_end_to_end import replay_lines

pytestmark = [pytest.mark.kafka, pytest.mark.crash]


def ingested(worker: Worker) -> float:
    status, body = worker.get("/metrics")
    if status != 200:
        return 0.0
    for line in body.decode().splitlines():
        if line.startswith('reciprocity_stage_events_total{stage="ingest"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_sigkill_during_ingest_loses_and_doubles_nothing(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"crash-{suffix}"
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    # One partition: every stage sees the events in order, so alert ids must match replay's.
    create_topics(kafka, [topics["events"]], partitions=1)
    lines = [orjson.dumps(event) for event in generate_traffic(7).events]
    produce(kafka, topics["events"], lines)  # a backlog: ingest hands it over batch by batch
    workdir = tmp_path_factory.mktemp("crash")
    worker = Worker(kafka, app_id, topics, 1, workdir, "only").start()
    try:
        deadline = time.monotonic() + 120
        while ingested(worker) < len(lines) // 4:
            assert time.monotonic() < deadline, "ingest never got going"
            time.sleep(0.05)
        worker.kill()  # mid-backlog: batches handed over, some not yet acknowledged
        assert ingested(worker) == 0.0  # really gone
        worker = Worker(kafka, app_id, topics, 1, workdir, "only").start()
        wait_drained(kafka, app_id, topics["events"])
        replayer, expected = replay_lines(lines)
        alerts = read_all(kafka, topics["alerts"])
        # At-least-once: an alert may be published again after the crash, with the same id.
        assert {(a["rule"], a["subject_id"], a["alert_id"]) for a in alerts} == {
            (a.rule, a.subject_id, a.alert_id) for a in expected
        }
        for account in ("spam-rt-1", "churn-1", "dupe-1", "u00118", "u00001", "u00042"):
            status, body = worker.get(f"/users/{account}/reciprocity")
            assert status == 200, body
            served = orjson.loads(body)["windows"]["7d"]
            want = replayer.profile(account)["windows"]["7d"]
            for part in ("given", "received", "posts"):
                assert served[part] == want[part], (account, part)
    finally:
        worker.stop()
