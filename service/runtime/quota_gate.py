"""The rules' quotas in the worker: `RuleQuotas` between the stages and the alert sinks, with
its metrics and its log line.

One gate per worker process, shared by its three stages, so a quota counts the alerts this
process raises: with N processes a rule may send up to N times its quota before every breaker
is open, and a restart or a rebalance starts the counts afresh (the counts are not in a
changelogged table). `replay`, one process over the whole input, applies the quota exactly.
A gate keyed by rule on a stage topic of its own would make it global; see the README's
"Operating the rules".
"""

from __future__ import annotations

import logging

from service.core.rule_quota import RuleQuotas
from service.runtime.checkpoint import Outputs
from service.runtime.metrics import Metrics

log = logging.getLogger(__name__)


class QuotaGate:
    def __init__(self, quotas: RuleQuotas, metrics: Metrics) -> None:
        self.quotas = quotas
        self._metrics = metrics
        self._open: set[str] = set()
        for rule in quotas.quotas:  # a series from the start, so "never open" is visible
            metrics.breaker_open.labels(rule).set(0)

    def advance(self, event_ms: int) -> None:
        """The newest event time a stage applied: breakers whose window ended close."""
        self.quotas.advance(event_ms)
        self._show_breakers()

    def route(self, outputs: Outputs) -> None:
        """Move the alerts past their rule's quota to the shadow alerts, marked, and add the
        breaker's trip alerts to the enforced ones."""
        if not outputs.alerts:
            return
        routed = self.quotas.route(outputs.alerts)
        outputs.alerts = routed.alerts
        if not routed.diverted:
            self._show_breakers()
            return
        outputs.shadow_alerts.extend(routed.diverted)
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
        """The gauge follows the breakers at the quota's clock (a handful of rules at most)."""
        for rule in self.quotas.quotas:
            is_open = self.quotas.is_open(rule)
            if is_open == (rule in self._open):
                continue
            self._metrics.breaker_open.labels(rule).set(1 if is_open else 0)
            if is_open:
                self._open.add(rule)
            else:
                self._open.discard(rule)
                log.info("rule %s: circuit breaker closed, its alerts go to the alerts topic", rule)
