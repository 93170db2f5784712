"""The detection file rewritten under a running worker: an invalid version is refused and
counted, a valid one is applied by the poll (and again on SIGHUP) without a restart; the
alerts of the events after it carry the new rule_version and mode, and alerts and counts equal
a replay that switches settings at the same event."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import orjson
import pytest
import yaml

from service.core.context import Config
from service.core.decoding import EventDecoder, Rejection
from service.core.models import Alert, ShadowAlert
from service.core.replay import Replayer
from service.detectors import RULES
from service.devtools.generate import generate_traffic
from service.settings import DetectionSettings, Settings
from tests.worker.harness import (
    Worker,
    create_topics,
    fresh_topics,
    produce,
    read_all,
    wait_drained,
)

pytestmark = pytest.mark.kafka

BEFORE = "follow_churn:\n  min_churned_pairs: 50\n"
INVALID = "follow_churn:\n  min_churned_pairs: 0\n"
# A lower bar for one rule, and another rule moved to shadow.
AFTER = "follow_churn:\n  min_churned_pairs: 5\nunsolicited_retweet_request:\n  mode: shadow\n"


def settings_of(text: str) -> DetectionSettings:
    return DetectionSettings.model_validate(yaml.safe_load(text))


def replay_switching(lines: list[bytes], at: int) -> tuple[list[Alert], Replayer]:
    """Replay with BEFORE up to line `at`, all of it applied, then AFTER."""
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    replayer = Replayer(settings_of(BEFORE), lambda: 0, include_shadow=True)
    alerts: list[Alert] = []
    for number, line in enumerate(lines):
        if number == at:
            alerts.extend(replayer.flush())
            replayer.pipeline.reconfigure(settings_of(AFTER))
        event = decoder.decode(line)
        if not isinstance(event, Rejection):
            alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return alerts, replayer


def metric(worker: Worker, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    status, body = worker.get("/metrics")
    assert status == 200
    found = {}
    for labels, value in re.findall(
        rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", body.decode(), re.MULTILINE
    ):
        found[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', labels)))] = float(value)
    return found


def wait_for(worker: Worker, name: str, value: float, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(worker, name).get((), 0.0) >= value:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name} never reached {value}: {metric(worker, name)}")


def rewrite(path: Path, text: str) -> None:
    """As an editor or a ConfigMap update does: a new file renamed over the old."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.replace(fresh, path)


def test_a_rewritten_detection_file_applies_to_the_next_events_without_a_restart(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app_id, topics = fresh_topics("reload")
    # One partition: every stage sees events in event-time order, so ids equal replay's.
    create_topics(kafka, [topics["events"]], partitions=1)
    lines = [
        orjson.dumps(event) for event in generate_traffic(3, users=500, organic_events=1500).events
    ]
    half = len(lines) // 2
    expected, replayer = replay_switching(lines, half)
    old, new = Config(settings_of(BEFORE), RULES), Config(settings_of(AFTER), RULES)
    assert old.rule_versions["follow_churn"] != new.rule_versions["follow_churn"]
    changed_alerts = [a for a in expected if a.rule_version == new.rule_versions["follow_churn"]]
    assert changed_alerts, "the events after the change must raise the changed rule"
    assert any(isinstance(a, ShadowAlert) for a in expected), "and the rule moved to shadow"

    workdir = tmp_path_factory.mktemp("reload")
    detection = workdir / "detection.yaml"
    detection.write_text(BEFORE)
    worker = Worker(kafka, app_id, topics, 1, workdir, "worker")
    worker.env["RECIPROCITY_DETECTION_FILE"] = str(detection)
    worker.env["RECIPROCITY_WORKER__DETECTION_FILE_CHECK_SECONDS"] = "1"
    worker.start()
    try:
        assert worker.process is not None
        pid = worker.process.pid
        produce(kafka, topics["events"], lines[:half])
        wait_drained(kafka, app_id, topics["events"])

        rewrite(detection, INVALID)
        wait_for(worker, "reciprocity_config_reload_failures_total", 1)
        rewrite(detection, AFTER)
        wait_for(worker, "reciprocity_config_reloads_total", 1)
        os.kill(pid, signal.SIGHUP)  # the same content again, on demand
        wait_for(worker, "reciprocity_config_reloads_total", 2)

        produce(kafka, topics["events"], lines[half:])
        wait_drained(kafka, app_id, topics["events"])
        published = read_all(kafka, topics["alerts"])
        on_shadow = read_all(kafka, topics["shadow_alerts"])
        events = metric(worker, "reciprocity_events_total")
        rule_info = metric(worker, "reciprocity_rule_info")
        failures = metric(worker, "reciprocity_config_reload_failures_total")
        profiles = {
            account: worker.get(f"/users/{account}/reciprocity")
            for account in ("churn-1", "spam-rt-1", "u00001", "u00042")
        }
        assert worker.process.poll() is None and worker.process.pid == pid  # never restarted
    finally:
        worker.stop()

    def keyed(alerts: list[dict[str, object]] | list[Alert]) -> set[tuple[object, ...]]:
        return {
            (a["rule"], a["subject_id"], a["alert_id"], a["rule_version"])
            if isinstance(a, dict)
            else (a.rule, a.subject_id, a.alert_id, a.rule_version)
            for a in alerts
        }

    assert keyed(published) == keyed([a for a in expected if not isinstance(a, ShadowAlert)])
    assert keyed(on_shadow) == keyed([a for a in expected if isinstance(a, ShadowAlert)])
    assert failures == {(): 1.0}  # the invalid file, once, though polled many times
    # Counted once each, in one process: a restart would have started the counters again.
    assert sum(events.values()) == len(lines)
    for account, (status, body) in profiles.items():
        assert status == 200, body
        served = orjson.loads(body)["windows"]["7d"]
        want = replayer.profile(account)["windows"]["7d"]
        for part in ("given", "received", "posts"):
            assert served[part] == want[part], (account, part)
    assert {dict(labels)["rule"]: dict(labels) for labels in rule_info} == {
        rule: {"rule": rule, "rule_version": version, "mode": new.modes[rule]}
        for rule, version in new.rule_versions.items()
    }
    log = worker.log.read_text()
    assert "follow_churn.min_churned_pairs: Input should be greater than or equal to 1" in log
