"""`reciprocity alerts`: filters, de-duplication and the readable line without Kafka; then the
command on a real broker, as a moderator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from service.alert_feed import AlertFilter, SeenIds, alert_line, parse_duration, shown
from service.core.models import Alert, Severity, ShadowAlert
from service.core.rule_quota import RuleQuotas
from tests.worker.harness import create_topics, produce

GOLDEN = Path(__file__).parent / "core" / "golden"


def golden(rule: str, **changes: object) -> Alert:
    alert = Alert.model_validate_json((GOLDEN / f"{rule}.json").read_bytes())
    return alert.model_copy(update=changes)


SPIKE = golden("follower_spike")
CHURN = golden("follow_churn", severity=Severity.HIGH)
DUPLICATE = golden("duplicate_reply_spam")


@pytest.mark.parametrize(
    ("keep", "admitted"),
    [
        (AlertFilter(), ["follower_spike", "follow_churn", "duplicate_reply_spam"]),
        (AlertFilter(rules=frozenset({"follow_churn"})), ["follow_churn"]),
        (AlertFilter(min_severity=Severity.HIGH), ["follow_churn"]),
        (AlertFilter(subjects=frozenset({SPIKE.subject_id})), ["follower_spike"]),
        (
            AlertFilter(rules=frozenset({"follow_churn"}), min_severity=Severity.HIGH),
            ["follow_churn"],
        ),
        (AlertFilter(rules=frozenset({"follower_spike"}), min_severity=Severity.HIGH), []),
    ],
)
def test_filters(keep: AlertFilter, admitted: list[str]) -> None:
    assert [a.rule for a in (SPIKE, CHURN, DUPLICATE) if keep.admits(a)] == admitted


def test_an_alert_published_twice_is_shown_once_and_other_messages_as_they_are() -> None:
    values = [SPIKE.model_dump_json().encode(), b"not an alert", SPIKE.model_dump_json().encode()]
    out = list(shown(values, AlertFilter(), SeenIds()))
    assert [alert.alert_id if alert else value for value, alert in out] == [
        SPIKE.alert_id,
        b"not an alert",
    ]


def test_remembered_ids_are_bounded() -> None:
    seen = SeenIds(capacity=2)
    assert [seen.first_time(i) for i in ("a", "b", "a", "c", "a")] == [
        True,
        True,
        False,
        True,
        True,
    ]


def test_the_line_has_time_severity_rule_subject_and_summary() -> None:
    text = alert_line(CHURN).plain
    assert text.startswith(CHURN.window_end.replace("T", " ").removesuffix("Z"))
    for part in ("HIGH", "follow_churn", CHURN.subject_id, CHURN.summary):
        assert part in text


def test_a_diverted_alert_is_marked_shadow_over_quota_and_a_trip_reads_as_an_alert() -> None:
    shadow = ShadowAlert(**dict(CHURN), mode="shadow")
    diverted = ShadowAlert(**dict(CHURN), mode="shadow", diverted_by="quota")
    assert "SHADOW" in alert_line(shadow).plain and "over quota" not in alert_line(shadow).plain
    assert "SHADOW (over quota)" in alert_line(diverted).plain
    quotas = RuleQuotas({"follow_churn": (1, None)}, lambda: 0)
    (trip,) = quotas.route([CHURN, CHURN.model_copy(update={"alert_id": "other"})]).tripped
    text = alert_line(trip).plain
    for part in ("HIGH", "rule_breaker_tripped", "follow_churn", trip.summary):
        assert part in text
    assert "SHADOW" not in text


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.kafka
def alerts_command(env: dict[str, str], *args: str) -> str:
    """`reciprocity alerts` over what the topic holds now."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "alerts", "--from-beginning", "--exit", *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout.decode()


def test_the_command_shows_each_alert_once_filtered(kafka: str) -> None:
    topic = f"alerts-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic], partitions=2)
    published = [SPIKE, CHURN, DUPLICATE, CHURN]  # CHURN twice: at-least-once
    produce(kafka, topic, [a.model_dump_json().encode() for a in published])
    env = {
        **os.environ,
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "RECIPROCITY_TOPICS__ALERTS": topic,
    }

    as_json = [orjson.loads(line) for line in alerts_command(env, "--json").splitlines()]
    assert sorted(a["alert_id"] for a in as_json) == sorted(
        {a.alert_id for a in (SPIKE, CHURN, DUPLICATE)}
    )
    readable = alerts_command(env, "--min-severity", "high").splitlines()
    assert len(readable) == 1
    assert "follow_churn" in readable[0] and CHURN.summary in readable[0]
    assert alerts_command(env, "--rule", "duplicate_reply_spam", "--json").count("\n") == 1
    example = subprocess.run(
        [sys.executable, "docs/examples/consume_alerts.py", kafka, topic, "--once"],
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    assert example.count("page: follow_churn") == 2  # the typed example does not de-duplicate
    assert "queue: follower_spike" in example


def test_shadow_follows_the_shadow_alerts_topic_and_marks_its_lines(kafka: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    alerts_topic, shadow_topic = f"alerts-{suffix}", f"shadow-{suffix}"
    create_topics(kafka, [alerts_topic, shadow_topic], partitions=1)
    shadow = ShadowAlert(**SPIKE.model_dump(), mode="shadow")
    produce(kafka, alerts_topic, [CHURN.model_dump_json().encode()])
    produce(kafka, shadow_topic, [shadow.model_dump_json().encode()])
    env = {
        **os.environ,
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "RECIPROCITY_TOPICS__ALERTS": alerts_topic,
        "RECIPROCITY_TOPICS__SHADOW_ALERTS": shadow_topic,
    }

    assert [
        orjson.loads(line)["alert_id"] for line in alerts_command(env, "--json").splitlines()
    ] == [CHURN.alert_id]
    on_shadow = [
        orjson.loads(line) for line in alerts_command(env, "--shadow", "--json").splitlines()
    ]
    assert [(a["alert_id"], a["mode"]) for a in on_shadow] == [(SPIKE.alert_id, "shadow")]
    (readable,) = alerts_command(env, "--shadow").splitlines()
    assert "SHADOW" in readable and "follower_spike" in readable and "not an alert" not in readable
