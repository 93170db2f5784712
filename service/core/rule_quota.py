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

Idempotent on `alert_id`: the decision for each alert id is remembered (per rule, the latest
`REMEMBERED_PER_RULE`), and a re-delivered alert gets the same decision again, is not counted
twice, and brings the same `rule_breaker_tripped` alert (same id: the rule, the window's length
and its start) if it was the one that tripped the breaker.

State per rule (`QuotaState`, serializable: the worker keeps it in a changelogged table keyed by
rule, replay in a dict), bounded: the counts of the windows within `KEPT_MS` (two days) of the
rule's newest alert time, so at most 49 hours and 3 days (a start, a count and a tripped flag
each); an alert older than that is counted in a fresh window. Plus the remembered decisions, at
most `REMEMBERED_PER_RULE` (a 32-character id and a flag each; the few that tripped a breaker
keep their trip alert): about 48 KB, the size of the changelog record a commit writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Literal

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
# Decisions remembered per rule for re-delivered alerts. In the worker the quota stage skips a
# replayed stage message by its offset and origin (`runtime.checkpoint`); an alert id comes again
# only when an upstream stage re-raises it in another message (it crashed after its outputs were
# acknowledged and before its marker was stored): within one commit round of that stage, a few
# hundred alerts of one rule at most. A thousand keeps the record a commit writes small.
REMEMBERED_PER_RULE = 1_000
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


@dataclass(frozen=True, slots=True)
class _Decision:
    diverted: bool
    trip: Alert | None  # the rule_breaker_tripped alert this alert caused, if any


@dataclass(slots=True)
class QuotaState:
    """One rule's quota state: its windows by start, only those within `KEPT_MS` of
    `newest_ms`, and the decisions remembered for re-delivered alerts (oldest first)."""

    hours: dict[int, _WindowCount] = field(default_factory=dict)
    days: dict[int, _WindowCount] = field(default_factory=dict)
    newest_ms: int = -1  # the newest alert time counted
    decisions: dict[str, _Decision] = field(default_factory=dict)

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

    def remember(self, alert_id: str, decision: _Decision, remembered: int) -> None:
        decisions = self.decisions
        decisions[alert_id] = decision
        while len(decisions) > remembered:
            del decisions[next(iter(decisions))]

    def to_value(self) -> dict[str, Any]:
        return {
            "hours": [[start, count.sent, count.tripped] for start, count in self.hours.items()],
            "days": [[start, count.sent, count.tripped] for start, count in self.days.items()],
            "newest_ms": self.newest_ms,
            "decisions": [
                [
                    alert_id,
                    decision.diverted,
                    None if decision.trip is None else decision.trip.model_dump(mode="json"),
                ]
                for alert_id, decision in self.decisions.items()
            ],
        }

    @classmethod
    def from_value(cls, value: dict[str, Any]) -> QuotaState:
        return cls(
            hours={start: _WindowCount(sent, tripped) for start, sent, tripped in value["hours"]},
            days={start: _WindowCount(sent, tripped) for start, sent, tripped in value["days"]},
            newest_ms=value["newest_ms"],
            decisions={
                alert_id: _Decision(diverted, None if trip is None else Alert.model_validate(trip))
                for alert_id, diverted, trip in value["decisions"]
            },
        )


@dataclass(slots=True)
class Routed:
    """Where a list of enforced alerts goes once the quotas are applied."""

    alerts: list[Alert] = field(default_factory=list)  # the alerts topic, trip alerts included
    diverted: list[ShadowAlert] = field(default_factory=list)  # the shadow topic
    tripped: list[Alert] = field(default_factory=list)  # trip alerts made now (not re-sent)


class RuleQuotas:
    """The quota decisions of every rule, in the order alerts are routed, over the rules'
    states: a dict in replay, the quota stage's table in the worker (a state read is written
    back once changed, so that the table's changelog gets it)."""

    def __init__(
        self,
        quotas: Mapping[str, tuple[int | None, int | None]],
        clock_ms: Callable[[], int],
        states: MutableMapping[str, QuotaState] | None = None,
        remembered: int = REMEMBERED_PER_RULE,
    ) -> None:
        self.quotas: dict[str, Quota] = {}
        self._versions: dict[str, str] = {}
        self._configured: dict[str, tuple[int | None, int | None]] = {}
        self.configure(quotas)
        self.states: MutableMapping[str, QuotaState] = {} if states is None else states
        self._clock_ms = clock_ms
        self._remembered = remembered
        self.event_ms = -1  # the quota's clock: the newest event time seen

    def configure(self, quotas: Mapping[str, tuple[int | None, int | None]]) -> bool:
        """The quotas for the next alerts (a detection file reloaded); a rule's counts go on.
        Returns whether they changed."""
        if quotas == self._configured:
            return False
        self._configured = dict(quotas)
        self.quotas = {
            rule: Quota(*limits) for rule, limits in quotas.items() if limits != (None, None)
        }
        self._versions = {
            rule: rule_version(
                BREAKER_LOGIC_VERSION,
                json.dumps({"quota_per_hour": quota.per_hour, "quota_per_day": quota.per_day}),
            )
            for rule, quota in self.quotas.items()
        }
        return True

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
        state = self.states.get(rule)
        now = self.event_ms
        if state is None or now < 0:
            return False
        hour = state.hours.get(now - now % HOUR_MS)
        day = state.days.get(now - now % DAY_MS)
        return (hour is not None and hour.tripped) or (day is not None and day.tripped)

    def route(self, alerts: Iterable[Alert]) -> Routed:
        """The enforced alerts of one stage message (or replayed event), in the order raised.
        Alerts of rules without a quota pass unchanged."""
        routed = Routed()
        for alert in alerts:
            rule = alert.rule
            if rule not in self.quotas:
                routed.alerts.append(alert)
                continue
            state = self.states.get(rule)
            if state is None:
                state = QuotaState()
            decision = state.decisions.get(alert.alert_id)
            fresh = decision is None
            if decision is None:
                at_ms = parse_timestamp_ms(alert.window_end)
                self.advance(at_ms)
                decision = self._decide(state, alert, at_ms)
                state.remember(alert.alert_id, decision, self._remembered)
                self.states[rule] = state
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

    def _decide(self, state: QuotaState, alert: Alert, at_ms: int) -> _Decision:
        if at_ms > state.newest_ms:
            state.newest_ms = at_ms
            state.forget_before(at_ms - KEPT_MS)
        quota = self.quotas[alert.rule]
        hour = state.window("hour", at_ms - at_ms % HOUR_MS)
        day = state.window("day", at_ms - at_ms % DAY_MS)
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


def trip_alert_id(rule: str, window: QuotaWindow, window_start_ms: int) -> str:
    """Deterministic: one breaker trip per rule and quota window, however often re-delivered."""
    material = f"{BREAKER_RULE}\x1f{rule}\x1f{window}\x1f{window_start_ms}"
    return blake2b(material.encode(), digest_size=16).hexdigest()
