"""One process, no Kafka: the same pipeline over a sequence of events, state in dicts.

Events are re-ordered by event time within the lateness bound before they reach the
pipeline, so input shuffled within that bound gives the same alerts as sorted input. The rules'
quotas (`rule_quota`) apply after the pipeline, in the order alerts are raised: one process
sees every alert, so a quota here is the global one.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.core.context import TargetMessage
from service.core.models import Alert, Event, EventType
from service.core.pipeline import Outcome, Pipeline, StageResult
from service.core.reciprocity import profile
from service.core.rule_quota import RuleQuotas
from service.core.state import MemoryTables
from service.settings import DetectionSettings


@dataclass
class ReplayStats:
    events_by_type: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    alerts: Counter[tuple[str, str]] = field(default_factory=Counter)  # enforced
    shadow_alerts: Counter[tuple[str, str]] = field(default_factory=Counter)  # diverted too
    diverted: Counter[str] = field(default_factory=Counter)  # by rule: past its quota
    suppressed: int = 0

    def count(self, result: StageResult) -> None:
        self.suppressed += len(result.suppressed)
        for alert in result.alerts:
            self.alerts[(alert.rule, alert.severity.value)] += 1
        for shadow in result.shadow_alerts:
            self.shadow_alerts[(shadow.rule, shadow.severity.value)] += 1


# Enum `.value` is a Python-level property in 3.11: too slow for twice per event.
_OUTCOME_NAMES = {outcome: outcome.value for outcome in Outcome}
_TYPE_NAMES = {kind: kind.value for kind in EventType}


class Replayer:
    """`submit` and `flush` return the alerts in the order the stages raised them: enforced
    ones, and with `include_shadow` also the shadow ones (`ShadowAlert`) among them. The stats
    count both either way."""

    def __init__(
        self,
        settings: DetectionSettings,
        clock_ms: Callable[[], int],
        *,
        include_shadow: bool = False,
    ) -> None:
        self.tables = MemoryTables.empty()
        self.pipeline = Pipeline(settings, self.tables, clock_ms)
        self.quotas = RuleQuotas(self.pipeline.config.quotas, clock_ms)
        self._quotas_active = bool(self.quotas)
        self.stats = ReplayStats()
        self.include_shadow = include_shadow
        self._lateness_ms = settings.state.allowed_lateness_seconds * 1000
        self._buffer: list[tuple[int, str, int, Event]] = []
        self._sequence = 0
        self.newest_ms = -1

    def submit(self, event: Event) -> list[Alert]:
        """Buffer an event; return the alerts of the events it pushed past the lateness bound."""
        self._sequence += 1
        heapq.heappush(self._buffer, (event.occurred_at, event.event_id, self._sequence, event))
        if event.occurred_at > self.newest_ms:
            self.newest_ms = event.occurred_at
        release_upto = self.newest_ms - self._lateness_ms
        alerts: list[Alert] = []
        buffer = self._buffer
        while buffer and buffer[0][0] <= release_upto:
            released = self.run(heapq.heappop(buffer)[3])
            if released:
                alerts.extend(released)
        return alerts

    def flush(self) -> list[Alert]:
        alerts: list[Alert] = []
        while self._buffer:
            alerts.extend(self.run(heapq.heappop(self._buffer)[3]))
        return alerts

    def run(self, event: Event) -> list[Alert]:
        """All three stages for one event, in order."""
        stats = self.stats
        if self._quotas_active:
            self.quotas.advance(event.occurred_at)  # an open breaker closes as the stream moves on
        first = self.pipeline.actor_stage(event)
        outcome = first.outcome
        stats.outcomes[_OUTCOME_NAMES[outcome]] += 1
        if outcome is Outcome.PROCESSED or outcome is Outcome.SELF_TARGETED:
            stats.events_by_type[_TYPE_NAMES[event.type]] += 1
        alerts = first.alerts
        if alerts or first.suppressed or first.shadow_alerts:
            self._apply_quotas(first)
            stats.count(first)
            alerts = self._with_shadow(first)
        if first.forward is not None:
            second = self._run_target(first.forward)
            if second:
                alerts = alerts + second
        return alerts

    def _run_target(self, message: TargetMessage) -> list[Alert]:
        pipeline = self.pipeline
        second = pipeline.target_stage(message)
        alerts = second.alerts
        if alerts or second.suppressed or second.shadow_alerts:
            self._apply_quotas(second)
            self.stats.count(second)
            alerts = self._with_shadow(second)
        if second.stranger_requests:
            alerts = list(alerts)
            for request in second.stranger_requests:
                third = pipeline.requester_stage(request)
                self._apply_quotas(third)
                self.stats.count(third)
                alerts.extend(self._with_shadow(third))
        return alerts

    def _apply_quotas(self, result: StageResult) -> None:
        """Enforced alerts past their rule's quota move to the shadow alerts, marked; a
        breaker's trip alert joins the enforced ones."""
        if not self._quotas_active or not result.alerts:
            return
        routed = self.quotas.route(result.alerts)
        result.alerts = routed.alerts
        if routed.diverted:
            result.shadow_alerts.extend(routed.diverted)
            self.stats.diverted.update(alert.rule for alert in routed.diverted)

    def _with_shadow(self, result: StageResult) -> list[Alert]:
        if self.include_shadow and result.shadow_alerts:
            return [*result.alerts, *result.shadow_alerts]
        return result.alerts

    def profile(self, account_id: str) -> dict[str, Any]:
        return profile(
            self.pipeline.config,
            account_id,
            self.tables.actors.get(account_id),
            self.tables.targets.get(account_id),
            self.newest_ms,
        )
