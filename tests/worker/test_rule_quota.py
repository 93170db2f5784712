"""A rule with a quota on a real worker: past it, the rule's alerts land on the shadow topic
marked `diverted_by: quota`, a rule_breaker_tripped alert on the alerts topic, as replay gives
them; /metrics counts the diverted alerts and shows the breaker's gauge."""

from __future__ import annotations

import re
import uuid

import orjson
import pytest

from service.core.decoding import EventDecoder, Rejection
from service.core.models import BREAKER_RULE, Alert, ShadowAlert
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.settings import DetectionSettings, Settings
from tests.worker.harness import Worker, create_topics, produce, read_all, wait_drained

pytestmark = pytest.mark.kafka

QUOTA_RULE = "unsolicited_retweet_request"


def replay_with_quota(lines: list[bytes]) -> list[Alert]:
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    replayer = Replayer(
        DetectionSettings.model_validate({QUOTA_RULE: {"quota_per_hour": 1}}),
        lambda: 0,
        include_shadow=True,
    )
    alerts: list[Alert] = []
    for line in lines:
        event = decoder.decode(line)
        if not isinstance(event, Rejection):
            alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return alerts


def test_past_its_quota_a_rules_alerts_go_to_the_shadow_topic(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    suffix = uuid.uuid4().hex[:8]
    app_id = f"quota-{suffix}"
    topics = {
        "events": f"events-{suffix}",
        "alerts": f"alerts-{suffix}",
        "shadow_alerts": f"shadow-alerts-{suffix}",
        "dead_letters": f"dlq-{suffix}",
    }
    # One partition and one worker: the order replay routes alerts in, and the one process
    # whose quota is then the global one.
    create_topics(kafka, [topics["events"]], partitions=1)
    lines = [
        orjson.dumps(event) for event in generate_traffic(3, users=500, organic_events=1500).events
    ]
    expected = replay_with_quota(lines)
    enforced = {
        (a.rule, a.subject_id, a.alert_id) for a in expected if not isinstance(a, ShadowAlert)
    }
    diverted = {(a.rule, a.subject_id, a.alert_id) for a in expected if isinstance(a, ShadowAlert)}
    assert {rule for rule, _, _ in diverted} == {QUOTA_RULE}
    assert any(rule == BREAKER_RULE for rule, _, _ in enforced)

    worker = Worker(kafka, app_id, topics, 1, tmp_path_factory.mktemp("quota"), "worker")
    worker.env[f"RECIPROCITY_DETECTION__{QUOTA_RULE.upper()}__QUOTA_PER_HOUR"] = "1"
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
    assert {(a["rule"], a["subject_id"], a["alert_id"]) for a in on_shadow} == diverted
    for payload in on_shadow:
        shadow = ShadowAlert.model_validate(payload)
        assert (shadow.mode, shadow.diverted_by) == ("shadow", "quota")
    for payload in published:
        Alert.model_validate(payload)  # the contract's fields, nothing more

    assert status == 200
    text = body.decode()
    (diverted_count,) = re.findall(
        rf'^reciprocity_alerts_diverted_total\{{rule="{QUOTA_RULE}"\}} (\S+)$', text, re.MULTILINE
    )
    assert float(diverted_count) >= len(diverted)  # at least once
    gauges = re.findall(r"^reciprocity_rule_breaker_open\{([^}]*)\} (\S+)$", text, re.MULTILINE)
    assert [labels for labels, _ in gauges] == [f'rule="{QUOTA_RULE}"']
