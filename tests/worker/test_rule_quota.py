"""A rule with a quota on real workers: past it, the rule's alerts land on the shadow topic
marked `diverted_by: quota`, a rule_breaker_tripped alert on the alerts topic, as replay gives
them; /metrics counts the diverted alerts and shows the breaker's gauge. Two workers in one
group send no more than the quota together: the quota stage, keyed by rule, decides all of a
rule's alerts in one place."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson
import pytest

from service.core.models import BREAKER_RULE, Alert, ShadowAlert, parse_timestamp_ms
from service.core.rule_quota import trip_alert_id
from service.core.windows import DAY_MS
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

QUOTA_RULE = "unsolicited_retweet_request"


def replay_with_quota(lines: list[bytes], quota: str = "quota_per_hour") -> list[Alert]:
    return replayed_lines(lines, DetectionSettings.model_validate({QUOTA_RULE: {quota: 1}}))


def test_past_its_quota_a_rules_alerts_go_to_the_shadow_topic(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    app_id, topics = fresh_topics("quota")
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


def test_two_workers_send_no_more_than_the_quota_together(
    kafka: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two partitions, two workers, a quota of one alert a day. The rule's requesters hash to
    both partitions (spam-rt-1 to one, spam-rt-2 and -3 to the other), so each worker raises
    some of that day's alerts: counted per process, two would be sent."""
    app_id, topics = fresh_topics("quota-two")
    create_topics(kafka, [topics["events"]], partitions=2)
    lines = [
        orjson.dumps(event) for event in generate_traffic(3, users=500, organic_events=1500).events
    ]
    expected = replay_with_quota(lines, "quota_per_day")
    workdir = tmp_path_factory.mktemp("quota-two")
    workers = [Worker(kafka, app_id, topics, 2, workdir, name) for name in ("first", "second")]
    for worker in workers:
        worker.env[f"RECIPROCITY_DETECTION__{QUOTA_RULE.upper()}__QUOTA_PER_DAY"] = "1"
        worker.start()
    try:
        produce(kafka, topics["events"], lines)
        wait_drained(kafka, app_id, topics["events"])
        # At-least-once: an alert sent again carries its first id.
        published = {a["alert_id"]: a for a in read_all(kafka, topics["alerts"])}.values()
        on_shadow = {a["alert_id"]: a for a in read_all(kafka, topics["shadow_alerts"])}.values()
        pages = [worker.get("/metrics") for worker in workers]
    finally:
        for worker in workers:
            worker.stop()

    # Both workers raised alerts of the rule (each ran stage 3 for one of the partitions).
    for status, body in pages:
        assert status == 200
        (stage3,) = re.findall(
            r'^reciprocity_stage_events_total\{stage="stage3"\} (\S+)$', body.decode(), re.M
        )
        assert float(stage3) > 0

    # Every alert replay raises, sent or diverted (stage 2 merges two partitions, so it may
    # open an episode on another event than replay, with another id; subjects and severities
    # are replay's).
    def raised(alerts: list[Any]) -> Counter[tuple[str, str, str]]:
        keys = [
            (a["rule"], a["subject_id"], a["severity"])
            if isinstance(a, dict)
            else (a.rule, a.subject_id, a.severity.value)
            for a in alerts
        ]
        return Counter(key for key in keys if key[0] != BREAKER_RULE)

    assert raised([*published, *on_shadow]) == raised(expected)
    # The quota held over both workers: one alert of the rule per event-time day, the rest
    # diverted, and one trip per day past the quota.
    per_day: Counter[tuple[bool, int]] = Counter()
    for payload, is_sent in [(a, True) for a in published] + [(a, False) for a in on_shadow]:
        if payload["rule"] == QUOTA_RULE:
            at = parse_timestamp_ms(payload["window_end"])
            per_day[(is_sent, at - at % DAY_MS)] += 1
    days = {day for _, day in per_day}
    assert [per_day[(True, day)] for day in sorted(days)] == [1] * len(days)
    assert any(per_day[(False, day)] for day in days), "the traffic must exceed the quota"
    assert {a["alert_id"] for a in published if a["rule"] == BREAKER_RULE} == {
        trip_alert_id(QUOTA_RULE, "day", day) for day in days if per_day[(False, day)]
    }
    assert {(a["mode"], a["diverted_by"]) for a in on_shadow} == {("shadow", "quota")}
    # The breaker's gauge is a series on each worker; the diverted alerts were counted once
    # or more (at-least-once) by the worker holding the rule's quota partition.
    diverted_total = 0.0
    for _, body in pages:
        text = body.decode()
        gauges = re.findall(r"^reciprocity_rule_breaker_open\{([^}]*)\} (\S+)$", text, re.M)
        assert [labels for labels, _ in gauges] == [f'rule="{QUOTA_RULE}"']
        diverted_total += sum(
            float(count)
            for count in re.findall(
                rf'^reciprocity_alerts_diverted_total\{{rule="{QUOTA_RULE}"\}} (\S+)$', text, re.M
            )
        )
    assert diverted_total >= len(on_shadow)
