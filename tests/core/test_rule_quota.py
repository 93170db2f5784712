"""Quotas and the circuit breaker per rule (`service.core.rule_quota`), in event time.

Each case is a timeline of one rule's alerts in minutes after T0 (2026-01-05T00:00Z, the start
of an hour and of a day) and what became of each: `sent` to the alerts topic, `diverted` to the
shadow topic, `tripped` (diverted, and the rule_breaker_tripped alert sent beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest

from service.core.models import BREAKER_RULE, Alert, Severity, ShadowAlert, format_timestamp
from service.core.rule_quota import QuotaState, Routed, RuleQuotas, trip_alert_id
from service.core.windows import DAY_MS, HOUR_MS
from tests.events import FIXED_NOW, T0

RULE = "follow_churn"
OTHER = "duplicate_reply_spam"


def alert(minute: float, rule: str = RULE, subject: str | None = None) -> Alert:
    """An enforced alert triggered `minute` minutes after T0 (its `window_end`)."""
    at = T0 + int(minute * 60_000)
    subject = subject or f"{rule}-{minute}"
    return Alert(
        alert_id=f"{rule}:{subject}:{at}",
        rule=rule,  # type: ignore[arg-type]
        rule_version="1.test",
        severity=Severity.MEDIUM,
        subject_id=subject,
        related_ids=[],
        window_start=format_timestamp(at - HOUR_MS),
        window_end=format_timestamp(at),
        detected_at=format_timestamp(FIXED_NOW),
        evidence={"count": 1},
        summary="test",
    )


def quotas(per_hour: int | None, per_day: int | None, rule: str = RULE) -> RuleQuotas:
    return RuleQuotas({rule: (per_hour, per_day), OTHER: (None, None)}, lambda: FIXED_NOW)


def fate(quota: RuleQuotas, item: Alert) -> str:
    routed = quota.route([item])
    if routed.alerts == [item]:
        assert not routed.diverted
        return "sent"
    (diverted,) = routed.diverted
    assert isinstance(diverted, ShadowAlert)
    assert diverted.diverted_by == "quota" and diverted.mode == "shadow"
    # Otherwise the very alert it would have been.
    assert diverted.model_dump(exclude={"mode", "diverted_by"}) == item.model_dump()
    if not routed.alerts:
        return "diverted"
    (trip,) = routed.alerts
    assert trip.rule == BREAKER_RULE and trip.subject_id == item.rule
    return "tripped"


@dataclass(frozen=True)
class Case:
    name: str
    per_hour: int | None
    per_day: int | None
    timeline: list[tuple[float, str]]  # (minute after T0, fate)


HOUR, DAY = 60, 24 * 60
S, D, T = "sent", "diverted", "tripped"

CASES = [
    # |0 ......... 60|  3 an hour: 3 sent, the 4th trips the breaker, the 5th is diverted
    Case("hour quota: N-th sent, N+1-th trips", 3, None, [(1, S), (2, S), (3, S), (4, T), (5, D)]),
    Case("a quota of one", 1, None, [(0, S), (59, T)]),
    # |0 ... 60|60 ... 120|  the next hour starts afresh
    Case(
        "the next hour closes the breaker",
        2,
        None,
        [(1, S), (2, S), (3, T), (59.99, D), (HOUR, S), (HOUR + 1, S), (HOUR + 2, T)],
    ),
    # |0 . 60|60 . 120|120 . 180|  2 an hour fit the hour quota; 4 a day stop the fifth
    Case(
        "day quota past hour boundaries",
        2,
        4,
        [(1, S), (2, S), (HOUR + 1, S), (HOUR + 2, S), (2 * HOUR + 1, T), (3 * HOUR + 1, D)],
    ),
    # |0 ............ 1440|1440 ...|  the day's breaker holds for hours, lets go at midnight
    Case(
        "the next day closes the day breaker",
        None,
        2,
        [(1, S), (2, S), (3, T), (5 * HOUR, D), (DAY - 0.01, D), (DAY, S), (DAY + 1, S)],
    ),
    Case("no quota: everything sent", None, None, [(1, S), (2, S), (3, S)]),
    # |0 . 30 31 32 . 60|60 . 70 71 72 . 120|  raised late (minute 30 after 70), an alert
    # counts in its own hour: each hour sends 2 and trips on its third
    Case(
        "a late alert counts in its own hour",
        2,
        None,
        [(HOUR + 10, S), (30, S), (HOUR + 11, S), (31, S), (HOUR + 12, T), (32, T), (33, D)],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_quota_boundaries(case: Case) -> None:
    quota = quotas(case.per_hour, case.per_day)
    assert [(minute, fate(quota, alert(minute))) for minute, _ in case.timeline] == case.timeline


@pytest.mark.parametrize(
    ("per_hour", "per_day", "window", "start", "closes"),
    [
        (2, None, "hour", T0 + HOUR_MS, T0 + 2 * HOUR_MS),
        (None, 2, "day", T0, T0 + DAY_MS),
        (2, 2, "day", T0, T0 + DAY_MS),  # both full: the longer window holds it
    ],
)
def test_the_trip_alert_names_the_rule_and_its_window(
    per_hour: int | None, per_day: int | None, window: str, start: int, closes: int
) -> None:
    quota = quotas(per_hour, per_day)
    for minute in (61, 62):
        assert fate(quota, alert(minute)) == "sent"
    diverted = alert(63)
    routed = quota.route([diverted])
    (trip,) = routed.alerts
    assert routed.tripped == [trip]
    assert trip.alert_id == trip_alert_id(RULE, window, start)  # type: ignore[arg-type]
    assert trip.severity is Severity.HIGH and trip.subject_id == RULE
    assert trip.window_start == format_timestamp(start)
    assert trip.window_end == diverted.window_end
    assert trip.evidence["quota_window"] == window
    assert trip.evidence["alerts_sent"] == 2
    assert trip.evidence["breaker_closes_at"] == format_timestamp(closes)
    assert trip.evidence["first_diverted_alert_id"] == diverted.alert_id
    assert RULE in trip.summary and format_timestamp(closes) in trip.summary


def test_a_breaker_trips_once_per_window_and_again_in_the_next() -> None:
    quota = quotas(1, None)
    trips = []
    for minute in [1, 2, 3, 4, HOUR + 1, HOUR + 2, HOUR + 3]:
        trips += quota.route([alert(minute)]).tripped
    assert [trip.window_start for trip in trips] == [
        format_timestamp(T0),
        format_timestamp(T0 + HOUR_MS),
    ]
    assert len({trip.alert_id for trip in trips}) == 2


def test_a_redelivered_alert_gets_the_same_decision_and_is_not_counted_again() -> None:
    quota = quotas(2, None)
    first, second, third = alert(1), alert(2), alert(3)
    assert fate(quota, first) == "sent"
    for _ in range(3):  # re-delivered: still sent, and it does not use up the quota
        assert fate(quota, first) == "sent"
    assert fate(quota, second) == "sent"
    tripping = quota.route([third])
    again = quota.route([third])
    # The same trip alert again (same id, same payload: a subscriber de-duplicates it), but
    # only the first is a new trip (the log line, the metric).
    assert again.alerts == tripping.alerts and len(again.alerts) == 1
    assert tripping.tripped == tripping.alerts and again.tripped == []


def test_remembered_decisions_are_bounded() -> None:
    quota = RuleQuotas({RULE: (1000, None)}, lambda: FIXED_NOW, remembered=3)
    alerts = [alert(minute / 10) for minute in range(5)]
    for item in alerts:
        quota.route([item])
    # The two oldest are forgotten: re-delivered now, they would count again.
    assert fate(quota, alerts[-1]) == "sent"
    assert quota.states[RULE].hours[T0].sent == 5
    quota.route([alerts[0]])
    assert quota.states[RULE].hours[T0].sent == 6


def test_windows_kept_are_bounded_to_two_days_behind_the_newest_alert() -> None:
    quota = quotas(1, 10)
    for hour in range(5 * 24):
        quota.route([alert(hour * HOUR + 1)])
    counts = quota.states[RULE]
    # The newest alert is at hour 119 (+1 min): hours 71..119 and days 2..4 reach past 71:01.
    assert sorted(counts.hours) == [T0 + hour * HOUR_MS for hour in range(71, 120)]
    assert sorted(counts.days) == [T0 + day * DAY_MS for day in range(2, 5)]


def test_the_breaker_closes_when_event_time_passes_the_window_without_alerts() -> None:
    quota = quotas(1, None)
    quota.route([alert(1)])
    quota.route([alert(2)])
    assert quota.is_open(RULE)
    assert quota.advance(T0 + HOUR_MS - 1) == []
    assert quota.is_open(RULE)
    assert quota.advance(T0 + HOUR_MS) == [RULE]
    assert not quota.is_open(RULE)
    assert quota.advance(T0 + HOUR_MS + 1) == []  # closed once, reported once


def test_rules_count_apart_and_rules_without_quota_pass_unchanged() -> None:
    quota = RuleQuotas({RULE: (1, None), OTHER: (1, None)}, lambda: FIXED_NOW)
    free = alert(1, rule="follower_spike")
    routed = quota.route([alert(1), alert(2, rule=OTHER), free, alert(3), alert(4, rule=OTHER)])
    assert [a.rule for a in routed.alerts] == [RULE, OTHER, "follower_spike"] + [BREAKER_RULE] * 2
    assert [a.rule for a in routed.diverted] == [RULE, OTHER]
    assert {trip.subject_id for trip in routed.tripped} == {RULE, OTHER}


def test_no_quota_configured_is_falsy() -> None:
    assert not RuleQuotas({RULE: (None, None)}, lambda: FIXED_NOW)
    assert RuleQuotas({RULE: (None, 5)}, lambda: FIXED_NOW)


def test_a_rules_state_survives_serialization_with_its_decisions_and_trip() -> None:
    """The worker keeps each rule's state in a changelogged table: what is restored from it
    decides every alert, new or re-delivered, as the state it was written from."""
    quota = quotas(2, 5)
    alerts = [alert(minute) for minute in (1, 2, 3, 4)]
    before = [quota.route([item]) for item in alerts]
    restored = RuleQuotas(
        {RULE: (2, 5)},
        lambda: FIXED_NOW,
        {RULE: QuotaState.from_value(orjson.loads(orjson.dumps(quota.states[RULE].to_value())))},
    )
    assert restored.states[RULE] == quota.states[RULE]
    # Re-delivered: the same decisions, the trip alert with the same payload.
    assert [restored.route([item]) for item in alerts] == [
        Routed(routed.alerts, routed.diverted, []) for routed in before
    ]
    # New: counted on from the restored counts (the hour is full).
    assert fate(restored, alert(5)) == "diverted"
    assert fate(restored, alert(HOUR + 1)) == "sent"


def test_quotas_changed_live_apply_to_the_next_alert_and_keep_the_counts() -> None:
    quota = quotas(1, None)
    assert fate(quota, alert(1)) == "sent"
    assert not quota.configure({RULE: (1, None), OTHER: (None, None)})  # unchanged
    assert quota.configure({RULE: (3, None)})
    assert fate(quota, alert(2)) == "sent"  # the second of three this hour
    assert fate(quota, alert(3)) == "sent"
    assert fate(quota, alert(4)) == "tripped"
    assert quota.configure({RULE: (None, None)})  # no quota: alerts pass, nothing counted
    assert fate(quota, alert(5)) == "sent"
    assert quota.states[RULE].hours[T0].sent == 3
