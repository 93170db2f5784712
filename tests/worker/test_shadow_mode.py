"""A rule in shadow mode on a real worker: its alerts land on the shadow topic, marked, with the
ids replay gives them, and never on the alerts topic; /metrics counts them with mode="shadow"."""

from __future__ import annotations

import re

import orjson
import pytest

from service.core.models import Alert, ShadowAlert
from service.devtools.generate import generate_traffic
from service.settings import DetectionSettings
from tests.worker.harness import (
    Worker,
    create_topics,
    fresh_topics,
    produce,
    read_all,
    replayed_lines,
    wait_drained,
)

pytestmark = pytest.mark.kafka

SHADOW_RULE = "follower_spike"


def replay_in_shadow(lines: list[bytes]) -> list[Alert]:
    return replayed_lines(
        lines, DetectionSettings.model_validate({SHADOW_RULE: {"mode": "shadow"}})
    )


def test_a_shadow_rules_alerts_go_to_the_shadow_topic_only(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app_id, topics = fresh_topics("shadow")
    # One partition: every stage sees events in event-time order, so ids equal replay's.
    create_topics(kafka, [topics["events"]], partitions=1)
    lines = [
        orjson.dumps(event) for event in generate_traffic(3, users=500, organic_events=1500).events
    ]
    expected = replay_in_shadow(lines)
    enforced = {
        (a.rule, a.subject_id, a.alert_id) for a in expected if not isinstance(a, ShadowAlert)
    }
    shadow = {(a.rule, a.subject_id, a.alert_id) for a in expected if isinstance(a, ShadowAlert)}
    assert {rule for rule, _, _ in shadow} == {SHADOW_RULE}
    assert enforced, "the other rules alert as usual"

    worker = Worker(kafka, app_id, topics, 1, tmp_path_factory.mktemp("shadow"), "worker")
    worker.env[f"RECIPROCITY_DETECTION__{SHADOW_RULE.upper()}__MODE"] = "shadow"
    worker.start()
    try:
        produce(kafka, topics["events"], lines)
        wait_drained(kafka, app_id, topics["events"])
        published = read_all(kafka, topics["alerts"])
        on_shadow = read_all(kafka, topics["shadow_alerts"])
        status, body = worker.get("/metrics")
    finally:
        worker.stop()

    assert {(a["rule"], a["subject_id"], a["alert_id"]) for a in published} == enforced
    assert {(a["rule"], a["subject_id"], a["alert_id"]) for a in on_shadow} == shadow
    for payload in on_shadow:
        assert ShadowAlert.model_validate(payload).mode == "shadow"
    for payload in published:
        assert "mode" not in payload
        Alert.model_validate(payload)  # the contract's fields, nothing more

    assert status == 200
    counted = {}
    for labels, value in re.findall(
        r"^reciprocity_alerts_total\{([^}]*)\} (\S+)$", body.decode(), re.MULTILINE
    ):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counted[(named["rule"], named["severity"], named["mode"])] = float(value)
    shadow_counted = {key: n for key, n in counted.items() if key[0] == SHADOW_RULE}
    assert shadow_counted and {mode for _, _, mode in shadow_counted} == {"shadow"}
    assert sum(shadow_counted.values()) >= len(shadow)  # at least once
    assert {mode for (rule, _, mode) in counted if rule != SHADOW_RULE} == {"enforce"}
