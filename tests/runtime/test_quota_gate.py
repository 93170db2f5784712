"""The quota gate between the stages and the alert sinks: routing, metrics and the log line."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from service.core.models import BREAKER_RULE
from service.core.rule_quota import RuleQuotas
from service.core.windows import HOUR_MS
from service.runtime.checkpoint import Outputs
from service.runtime.metrics import Metrics
from service.runtime.quota_gate import QuotaGate
from tests.core.test_rule_quota import RULE, alert
from tests.events import FIXED_NOW, T0


def gate() -> tuple[QuotaGate, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return QuotaGate(RuleQuotas({RULE: (1, None)}, lambda: FIXED_NOW), metrics), metrics


def value(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"rule": RULE})


def test_the_breaker_gauge_the_diverted_count_and_one_log_line_per_trip(
    caplog: pytest.LogCaptureFixture,
) -> None:
    quotas, metrics = gate()
    assert value(metrics, "reciprocity_rule_breaker_open") == 0
    caplog.set_level(logging.INFO, logger="service.runtime.quota_gate")

    first = Outputs(alerts=[alert(1)])
    quotas.route(first)
    assert [a.rule for a in first.alerts] == [RULE] and not first.shadow_alerts
    assert value(metrics, "reciprocity_rule_breaker_open") == 0

    over = Outputs(alerts=[alert(2), alert(3)])
    quotas.route(over)
    assert [a.rule for a in over.alerts] == [BREAKER_RULE]
    assert [a.diverted_by for a in over.shadow_alerts] == ["quota", "quota"]
    assert value(metrics, "reciprocity_alerts_diverted_total") == 2
    assert value(metrics, "reciprocity_rule_breaker_open") == 1

    again = Outputs(alerts=[alert(2)])  # re-delivered: the trip alert again, no new log line
    quotas.route(again)
    assert again.alerts == over.alerts
    tripped = [r for r in caplog.records if "tripped" in r.getMessage()]
    assert len(tripped) == 1 and RULE in tripped[0].getMessage()

    quotas.advance(T0 + HOUR_MS - 1)
    assert value(metrics, "reciprocity_rule_breaker_open") == 1
    quotas.advance(T0 + HOUR_MS)  # the next hour: closed without another alert
    assert value(metrics, "reciprocity_rule_breaker_open") == 0
    closed = [r for r in caplog.records if "closed" in r.getMessage()]
    assert len(closed) == 1


def test_outputs_without_alerts_pass_untouched() -> None:
    quotas, metrics = gate()
    outputs = Outputs()
    quotas.route(outputs)
    assert outputs == Outputs()
    assert value(metrics, "reciprocity_alerts_diverted_total") is None
