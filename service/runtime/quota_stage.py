"""The rules' quotas in the worker: a stage of their own, keyed by rule.

    stages 1-3 ──alerts of rules with a quota──▶ quota topic (key: rule) ──▶ QuotaStage
         │                                                                   rule states
         └──other alerts──▶ alerts topic          alerts topic, shadow topic ◀──┘

All of a rule's alerts reach one partition of the quota topic, so one worker decides them,
in the order they arrive, from the rule's `RuleQuotas` state in a changelogged table: the
quota is global across workers, and a restart or a rebalance resumes the counts from the
changelog. The quota stage is a checkpointed stage like the others (`runtime.checkpoint`): a
replayed upstream message is skipped by its offset and origin, and the decisions remembered per
alert id absorb an alert an upstream stage raises again in another message.

`QuotaHop` is the upstream side: which alerts leave by the quota topic, read from the
pipeline's current config per message, so a quota changed by a detection file reload applies to
the next alert. `BreakerReport` is the metrics and the log lines of what the stage decided.
Built only when a rule has a quota at the start (`runtime.topology`); rules without one never
take the hop.
"""

from __future__ import annotations

import logging

from service.core.pipeline import Pipeline
from service.core.rule_quota import Routed, RuleQuotas
from service.runtime.checkpoint import Outputs
from service.runtime.framing import StageOutbox, encode_alert, partition_for
from service.runtime.metrics import Metrics

log = logging.getLogger(__name__)


class QuotaHop:
    """A stage's enforced alerts of rules with a quota, out of its alerts and into a message
    for the quota stage, keyed by rule.

    `origin_base` sets apart the upstream stages in the quota stage's progress markers: a
    stage's partition p is origin partition `origin_base + p` (stage 1: 0, stage 2: P, stage 3:
    2P for P partitions), since the three stages' offsets are three sequences."""

    def __init__(self, pipeline: Pipeline, partitions: int, origin_base: int) -> None:
        self._pipeline = pipeline
        self._partitions = partitions
        self.origin_base = origin_base

    def divert(self, outputs: Outputs) -> None:
        if not outputs.alerts:
            return
        quotas = self._pipeline.config.quotas
        kept = []
        outbox = None
        for alert in outputs.alerts:
            limits = quotas.get(alert.rule)
            if limits is None or limits == (None, None):
                kept.append(alert)
                continue
            if outbox is None:
                outbox = StageOutbox()
            outbox.add(partition_for(alert.rule, self._partitions), encode_alert(alert))
        if outbox is not None:
            outputs.alerts = kept
            outputs.to_quota_stage = outbox


class BreakerReport:
    """What the quota stage decided, as metrics and log lines: diverted alerts counted by rule,
    one warning per breaker tripped, the breaker's gauge per rule with a quota (open at the
    quota's clock: the newest event time this process saw) and a line when it closes."""

    def __init__(self, quotas: RuleQuotas, metrics: Metrics) -> None:
        self.quotas = quotas
        self._metrics = metrics
        self._open: set[str] = set()
        self._series: set[str] = set()
        self._show_breakers()

    def advance(self, event_ms: int) -> None:
        """The newest event time a stage applied: breakers whose window ended close."""
        self.quotas.advance(event_ms)
        self._show_breakers()

    def routed(self, routed: Routed) -> None:
        metrics = self._metrics
        for alert in routed.diverted:
            metrics.diverted.labels(alert.rule).inc()
        for trip in routed.tripped:
            evidence = trip.evidence
            log.warning(
                "rule %s: circuit breaker tripped, %s alerts sent in the %s from %s (quota %s); "
                "its further alerts there go to the shadow topic until %s",
                trip.subject_id,
                evidence["alerts_sent"],
                evidence["quota_window"],
                trip.window_start,
                evidence["quota"],
                evidence["breaker_closes_at"],
            )
        self._show_breakers()

    def _show_breakers(self) -> None:
        """The gauge follows the breakers at the quota's clock (a handful of rules at most); a
        rule given a quota by a reload gets its series then, one whose quota was removed
        reads closed."""
        for rule in self.quotas.quotas.keys() - self._series:
            self._metrics.breaker_open.labels(rule).set(0)  # "never open" is visible
            self._series.add(rule)
        for rule in self._series:
            is_open = rule in self.quotas.quotas and self.quotas.is_open(rule)
            if is_open == (rule in self._open):
                continue
            self._metrics.breaker_open.labels(rule).set(1 if is_open else 0)
            if is_open:
                self._open.add(rule)
            else:
                self._open.discard(rule)
                log.info("rule %s: circuit breaker closed, its alerts go to the alerts topic", rule)
