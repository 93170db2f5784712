"""Quotas and a circuit breaker per rule: at most N enforced alerts of a rule per event-time hour
and M per event-time day, UTC (`RECIPROCITY_DETECTION__<RULE>__QUOTA_PER_HOUR`, `__QUOTA_PER_DAY`).

A rule gone wrong (a bad threshold, a pattern that matches every reply) must not flood the
moderators. Past its quota, a rule's further alerts are diverted to the shadow topic as
`ShadowAlert`s (`"diverted_by": "quota"`, otherwise the alert they would have been), and one
`rule_breaker_tripped` alert (severity high, subject the rule) goes to the alerts topic. The
breaker closes by itself when the window it tripped in ends: the next hour for the hourly
quota, the next day for the daily one.

Event time throughout. An alert's time is its `window_end`, the time of the event that
triggered it (every detector sets it so), and it counts in the hour and the day that hold that
time, whenever it is routed: the worker's stages raise alerts out of event-time order (stage 3
runs behind stage 1), and an alert raised late still lands in its own window. The quota's clock,
the newest event time seen (alerts, and `advance` with the events' times), only says whether a
rule's breaker is open now (`is_open`: the current hour or day of the clock has tripped), so that
an open breaker reads closed once the stream passes the window's end, even if the rule stays
quiet.

Idempotent on `alert_id`: the decision for each alert id is remembered (the latest
`REMEMBERED_ALERT_IDS`), and a re-delivered alert gets the same decision again, is not counted
twice, and brings the same `rule_breaker_tripped` alert (same id: the rule, the window's length
and its start) if it was the one that tripped the breaker.

Bounded state: per rule with a quota, the counts of the windows within `KEPT_MS` (two days)
of the newest alert time, so at most 49 hours and 3 days (a start, a count and a tripped flag
each); an alert older than that is counted in a fresh window. Plus the remembered decisions, at
most `REMEMBERED_ALERT_IDS` (a 32-character id and a flag each; the few that tripped a breaker
keep their trip alert), about 2 MB.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Literal

from service.core.context import rule_version
from service.core.models import (
    BREAKER_RULE,
    Alert,
    Severity,
    ShadowAlert,
    format_timestamp,
    parse_timestamp_ms,
)
from service.core.windows import DAY_MS, HOUR_MS

# Windows kept per rule, behind its newest alert: a stage's alerts run behind another's by the
# stage-2 merge skew (15 min by default) or a backlog, hours at worst.
KEPT_MS = 2 * DAY_MS
# Decisions remembered for re-delivered alerts. A re-delivery comes within a rebalance or a
# restart of the message that raised it, minutes at most; far more alerts than that are raised
# in minutes only by a rule whose breaker is open anyway.
REMEMBERED_ALERT_IDS = 10_000
# Bump when the breaker's logic changes; the quotas show in the digest.
BREAKER_LOGIC_VERSION = "1"

QuotaWindow = Literal["hour", "day"]
_WINDOW_MS: dict[QuotaWindow, int] = {"hour": HOUR_MS, "day": DAY_MS}


@dataclass(frozen=True, slots=True)
class Quota:
    per_hour: int | None
    per_day: int | None


@dataclass(slots=True)
class _WindowCount:
    sent: int = 0
    tripped: bool = False


@dataclass(slots=True)
class _RuleCounts:
    """One rule's windows by start; only those within `KEPT_MS` of `newest_ms`."""

    hours: dict[int, _WindowCount] = field(default_factory=dict)
    days: dict[int, _WindowCount] = field(default_factory=dict)
    newest_ms: int = -1  # the newest alert time counted

    def window(self, length: QuotaWindow, start: int) -> _WindowCount:
        windows = self.hours if length == "hour" else self.days
        count = windows.get(start)
        if count is None:
            count = windows[start] = _WindowCount()
        return count

    def forget_before(self, oldest_ms: int) -> None:
        for windows, length in ((self.hours, HOUR_MS), (self.days, DAY_MS)):
            for start in [start for start in windows if start + length <= oldest_ms]:
                del windows[start]


@dataclass(frozen=True, slots=True)
class _Decision:
    diverted: bool
    trip: Alert | None  # the rule_breaker_tripped alert this alert caused, if any


@dataclass(slots=True)
class Routed:
    """Where a list of enforced alerts goes once the quotas are applied."""

    alerts: list[Alert] = field(default_factory=list)  # the alerts topic, trip alerts included
    diverted: list[ShadowAlert] = field(default_factory=list)  # the shadow topic
    tripped: list[Alert] = field(default_factory=list)  # trip alerts made now (not re-sent)


class RuleQuotas:
    """The quota decisions of every rule, in the order alerts are routed."""

    def __init__(
        self,
        quotas: Mapping[str, tuple[int | None, int | None]],
        clock_ms: Callable[[], int],
        remembered: int = REMEMBERED_ALERT_IDS,
    ) -> None:
        self.quotas = {
            rule: Quota(*limits) for rule, limits in quotas.items() if limits != (None, None)
        }
        self._counts = {rule: _RuleCounts() for rule in self.quotas}
        self._versions = {
            rule: rule_version(
                BREAKER_LOGIC_VERSION,
                json.dumps({"quota_per_hour": quota.per_hour, "quota_per_day": quota.per_day}),
            )
            for rule, quota in self.quotas.items()
        }
        self._clock_ms = clock_ms
        self._remembered = remembered
        self._decisions: dict[str, _Decision] = {}  # insertion-ordered: oldest first
        self.event_ms = -1  # the quota's clock: the newest event time seen

    def __bool__(self) -> bool:
        """Whether any rule has a quota (without one, routing changes nothing)."""
        return bool(self.quotas)

    def advance(self, event_ms: int) -> list[str]:
        """Move the clock to `event_ms` if it is newer; returns the rules whose breaker closed."""
        if event_ms <= self.event_ms:
            return []
        was_open = [rule for rule in self.quotas if self.is_open(rule)]
        self.event_ms = event_ms
        return [rule for rule in was_open if not self.is_open(rule)]

    def is_open(self, rule: str) -> bool:
        """Whether the rule's breaker is open at the clock: its current hour or day tripped."""
        counts = self._counts.get(rule)
        now = self.event_ms
        if counts is None or now < 0:
            return False
        hour = counts.hours.get(now - now % HOUR_MS)
        day = counts.days.get(now - now % DAY_MS)
        return (hour is not None and hour.tripped) or (day is not None and day.tripped)

    def route(self, alerts: Iterable[Alert]) -> Routed:
        """The enforced alerts of one stage message (or replayed event), in the order raised.
        Alerts of rules without a quota pass unchanged."""
        routed = Routed()
        for alert in alerts:
            if alert.rule not in self._counts:
                routed.alerts.append(alert)
                continue
            decision = self._decisions.get(alert.alert_id)
            fresh = decision is None
            if decision is None:
                self.advance(parse_timestamp_ms(alert.window_end))
                decision = self._decide(alert)
                self._remember(alert.alert_id, decision)
            if decision.diverted:
                routed.diverted.append(
                    ShadowAlert(**dict(alert), mode="shadow", diverted_by="quota")
                )
            else:
                routed.alerts.append(alert)
            if decision.trip is not None:
                routed.alerts.append(decision.trip)  # again if re-delivered: same id
                if fresh:
                    routed.tripped.append(decision.trip)
        return routed

    def _decide(self, alert: Alert) -> _Decision:
        at_ms = parse_timestamp_ms(alert.window_end)
        counts = self._counts[alert.rule]
        if at_ms > counts.newest_ms:
            counts.newest_ms = at_ms
            counts.forget_before(at_ms - KEPT_MS)
        quota = self.quotas[alert.rule]
        hour = counts.window("hour", at_ms - at_ms % HOUR_MS)
        day = counts.window("day", at_ms - at_ms % DAY_MS)
        day_full = quota.per_day is not None and day.sent >= quota.per_day
        hour_full = quota.per_hour is not None and hour.sent >= quota.per_hour
        if not (day_full or hour_full):
            hour.sent += 1
            day.sent += 1
            return _Decision(diverted=False, trip=None)
        # The longer window holds the breaker open longer, and says more about the rule.
        length: QuotaWindow = "day" if day_full else "hour"
        full = day if day_full else hour
        if full.tripped:
            return _Decision(diverted=True, trip=None)  # open already: one trip per window
        full.tripped = True
        start = at_ms - at_ms % _WINDOW_MS[length]
        return _Decision(diverted=True, trip=self._trip_alert(alert, length, start, full.sent))

    def _trip_alert(self, diverted: Alert, window: QuotaWindow, start: int, sent: int) -> Alert:
        rule = diverted.rule
        quota = self.quotas[rule]
        limit = quota.per_day if window == "day" else quota.per_hour
        closes = start + _WINDOW_MS[window]
        return Alert(
            alert_id=trip_alert_id(rule, window, start),
            rule=BREAKER_RULE,
            rule_version=self._versions[rule],
            severity=Severity.HIGH,
            subject_id=rule,
            related_ids=[],
            window_start=format_timestamp(start),
            window_end=diverted.window_end,
            detected_at=format_timestamp(self._clock_ms()),
            evidence={
                "quota_window": window,
                "quota": limit,
                "alerts_sent": sent,
                "quota_per_hour": quota.per_hour,
                "quota_per_day": quota.per_day,
                "breaker_closes_at": format_timestamp(closes),
                "first_diverted_alert_id": diverted.alert_id,
            },
            summary=(
                f"Rule {rule} reached its quota ({limit} alerts per {window}) in the {window} "
                f"from {format_timestamp(start)}: its further alerts go to the shadow topic "
                f"until {format_timestamp(closes)}."
            ),
        )

    def _remember(self, alert_id: str, decision: _Decision) -> None:
        decisions = self._decisions
        decisions[alert_id] = decision
        if len(decisions) > self._remembered:
            del decisions[next(iter(decisions))]


def trip_alert_id(rule: str, window: QuotaWindow, window_start_ms: int) -> str:
    """Deterministic: one breaker trip per rule and quota window, however often re-delivered."""
    material = f"{BREAKER_RULE}\x1f{rule}\x1f{window}\x1f{window_start_ms}"
    return blake2b(material.encode(), digest_size=16).hexdigest()
