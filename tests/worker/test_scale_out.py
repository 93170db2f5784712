"""Two workers in one consumer group on four partitions; one is killed with SIGKILL
mid-stream and restarted. Nothing is lost and nothing is counted twice."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from service.devtools.generate import generate_traffic
from tests.worker.harness import Worker, create_topics, produce, read_all, wait_drained
from tests.worker.test_end_to_end import replay_lines

pytestmark = [pytest.mark.kafka, pytest.mark.crash]

# Rules that read only the actor's own events, in its partition's order, open their episodes
# on the same events as replay. Rules that read what a merge of partitions wrote (stages 2 and
# 3, and follow_churn, whose follow-back marks stage 2 sets from another partition's forward)
# reach the same severities for the same subjects, but with several partitions the merge
# order, and so the event that opens an episode, can differ from replay's: their ids are
# compared in the one-partition test.
OWN_EVENTS_RULES = {"duplicate_reply_spam"}


# memory://: state rebuilt from the changelog. rocksdb://: the store itself survives the
# SIGKILL, with whatever it held at that instant, and recovery only tops it up.
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_two_workers_survive_a_sigkill(
    kafka: str,
    tmp_path_factory: pytest.TempPathFactory,
    store: str,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"scale-{suffix}"
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    create_topics(kafka, [topics["events"]], partitions=4)
    workdir = tmp_path_factory.mktemp("scale")
    first = Worker(kafka, app_id, topics, 4, workdir, "first", store).start()
    second = Worker(kafka, app_id, topics, 4, workdir, "second", store).start()
    lines = [orjson.dumps(event) for event in generate_traffic(7).events]
    try:
        half = len(lines) // 2
        produce(kafka, topics["events"], lines[:half])
        time.sleep(3)  # mid-stream: the second worker holds state and uncommitted offsets
        second.kill()
        produce(kafka, topics["events"], lines[half:])
        second = Worker(kafka, app_id, topics, 4, workdir, "second", store).start()
        wait_drained(kafka, app_id, topics["events"])
        alerts = read_all(kafka, topics["alerts"])
        replayer, expected = replay_lines(lines)

        # At-least-once: an alert may be published again after the crash, with the same id.
        unique = {a["alert_id"]: a for a in alerts}
        assert {(a["rule"], a["subject_id"], a["severity"]) for a in unique.values()} == {
            (a.rule, a.subject_id, a.severity.value) for a in expected
        }
        served_ids = {i: a for i, a in unique.items() if a["rule"] in OWN_EVENTS_RULES}
        replay_ids = {a.alert_id: a for a in expected if a.rule in OWN_EVENTS_RULES}
        assert served_ids.keys() == replay_ids.keys(), (
            [served_ids[i] for i in served_ids.keys() - replay_ids.keys()],
            [replay_ids[i] for i in replay_ids.keys() - served_ids.keys()],
        )

        # No count lost or doubled, asked of either worker whichever owns the account.
        accounts = ["spam-rt-1", "churn-1", "dupe-1", "u00118", "u00001", "u00042", "u00971"]
        for worker in (first, second):
            for account in accounts:
                status, body = worker.get(f"/users/{account}/reciprocity")
                assert status == 200, body
                served = orjson.loads(body)["windows"]["7d"]
                want = replayer.profile(account)["windows"]["7d"]
                for part in ("given", "received", "posts"):
                    assert served[part] == want[part], (account, part)
    finally:
        first.stop()
        second.stop()
