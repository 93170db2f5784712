"""The quota stage's parts without Kafka: the hop that takes a rule with a quota's alerts out of
a stage's outputs, keyed by rule and read from the pipeline's current config, and the report of
what the stage decided (metrics, log lines)."""

from __future__ import annotations

import logging

import orjson
import pytest
from prometheus_client import CollectorRegistry

from service.core.models import BREAKER_RULE
from service.core.pipeline import Pipeline
from service.core.rule_quota import RuleQuotas
from service.core.state import MemoryTables
from service.core.windows import HOUR_MS
from service.runtime.checkpoint import Outputs
from service.runtime.framing import decode_alert, partition_for
from service.runtime.metrics import Metrics
from service.runtime.quota_stage import BreakerReport, QuotaHop
from service.settings import DetectionSettings
from tests.core.test_rule_quota import OTHER, RULE, alert
from tests.events import FIXED_NOW, T0


def report() -> tuple[BreakerReport, Metrics]:
    metrics = Metrics(CollectorRegistry())
    return BreakerReport(RuleQuotas({RULE: (1, None)}, lambda: FIXED_NOW), metrics), metrics


def value(metrics: Metrics, name: str, rule: str = RULE) -> float | None:
    return metrics.registry.get_sample_value(name, {"rule": rule})


def test_the_breaker_gauge_the_diverted_count_and_one_log_line_per_trip(
    caplog: pytest.LogCaptureFixture,
) -> None:
    breakers, metrics = report()
    quotas = breakers.quotas
    assert value(metrics, "reciprocity_rule_breaker_open") == 0
    caplog.set_level(logging.INFO, logger="service.runtime.quota_stage")

    breakers.routed(quotas.route([alert(1)]))
    assert value(metrics, "reciprocity_rule_breaker_open") == 0

    over = quotas.route([alert(2), alert(3)])
    breakers.routed(over)
    assert [a.rule for a in over.alerts] == [BREAKER_RULE]
    assert value(metrics, "reciprocity_alerts_diverted_total") == 2
    assert value(metrics, "reciprocity_rule_breaker_open") == 1

    breakers.routed(quotas.route([alert(2)]))  # re-delivered: no new log line
    tripped = [r for r in caplog.records if "tripped" in r.getMessage()]
    assert len(tripped) == 1 and RULE in tripped[0].getMessage()

    breakers.advance(T0 + HOUR_MS - 1)
    assert value(metrics, "reciprocity_rule_breaker_open") == 1
    breakers.advance(T0 + HOUR_MS)  # the next hour: closed without another alert
    assert value(metrics, "reciprocity_rule_breaker_open") == 0
    assert len([r for r in caplog.records if "closed" in r.getMessage()]) == 1


def test_a_quota_given_live_gets_its_series_and_one_removed_reads_closed() -> None:
    breakers, metrics = report()
    quotas = breakers.quotas
    breakers.routed(quotas.route([alert(1), alert(2)]))
    assert value(metrics, "reciprocity_rule_breaker_open") == 1
    quotas.configure({OTHER: (5, None)})
    breakers.routed(quotas.route([]))
    assert value(metrics, "reciprocity_rule_breaker_open", OTHER) == 0
    assert value(metrics, "reciprocity_rule_breaker_open") == 0


def test_the_hop_takes_the_alerts_of_rules_with_a_quota_at_the_current_config() -> None:
    started = DetectionSettings.model_validate({"follower_spike": {"quota_per_hour": 9}})
    pipeline = Pipeline(started, MemoryTables.empty(), lambda: FIXED_NOW)
    hop = QuotaHop(pipeline, partitions=8, origin_base=16)
    outputs = Outputs(alerts=[alert(1), alert(2, rule=OTHER)])
    hop.divert(outputs)  # no quota of theirs: nothing moves
    assert [a.rule for a in outputs.alerts] == [RULE, OTHER] and outputs.to_quota_stage is None

    pipeline.reconfigure(DetectionSettings.model_validate({RULE: {"quota_per_day": 3}}))
    outputs = Outputs(alerts=[alert(1), alert(2, rule=OTHER), alert(3)])
    hop.divert(outputs)
    assert [a.rule for a in outputs.alerts] == [OTHER]
    assert outputs.to_quota_stage is not None
    (chunk,) = outputs.to_quota_stage.chunks(16 + 2, 40)
    assert chunk.partition == partition_for(RULE, 8)
    assert chunk.origin == (18, 40, 0)
    assert [decode_alert(orjson.loads(item)) for item in chunk.items] == [alert(1), alert(3)]
