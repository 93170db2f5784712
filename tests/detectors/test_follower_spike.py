from __future__ import annotations

import pytest

from tests.events import ESTABLISHED, FRESH, ev, replay, summary

RULE = "follower_spike"


def follows(
    count: int,
    start: float,
    every_minutes: float,
    snapshot: dict | None,
    prefix: str,
    target: str = "shop",
) -> list:
    return [
        ev("follow", f"{prefix}{i}", target, start + i * every_minutes, snapshot=snapshot)
        for i in range(count)
    ]


def steady_gain(per_10_min: int, hours: int) -> list:
    """Organic follows from established accounts, evenly spread."""
    every = 10 / per_10_min
    return follows(per_10_min * hours * 6, 0, every, ESTABLISHED, "fan")


CASES = [
    # minute: 0 ... 5         40 fresh follows in 5 min, no history: floor of 30 applies
    ("purchase_on_quiet_account", follows(40, 0, 0.125, FRESH, "fake"), [(RULE, "shop", "medium")]),
    ("organic_bump_from_established", follows(45, 0, 0.2, ESTABLISHED, "fan"), []),
    ("below_floor", follows(25, 0, 0.2, FRESH, "fake"), []),
    # 200 fresh in 10 min: medium at 30, high at 5 x 30 = 150
    (
        "big_purchase_escalates_once",
        follows(200, 0, 0.05, FRESH, "fake"),
        [(RULE, "shop", "medium"), (RULE, "shop", "high")],
    ),
    # hours 0-24: 10 follows / 10 min; then 60 fresh in 10 min: bar is 8 x 10 = 80
    (
        "within_own_baseline",
        steady_gain(10, 24) + follows(60, 24 * 60, 0.15, FRESH, "fake"),
        [(RULE, "shop", "medium")][:0],
    ),
    (
        "above_own_baseline",
        steady_gain(10, 24) + follows(150, 24 * 60, 0.06, FRESH, "fake"),
        [(RULE, "shop", "medium")],
    ),
    (
        "fast_followers_without_snapshot",
        [ev("follow", f"bot{i}", f"other{i}-{j}", j * 0.1) for i in range(35) for j in range(60)]
        + [ev("follow", f"bot{i}", "shop", 6.5 + i * 0.1) for i in range(35)],
        [(RULE, "shop", "medium")],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(e, x) for _, e, x in CASES], ids=[name for name, _, _ in CASES]
)
def test_follower_spike(events: list, expected: list) -> None:
    events = sorted(events, key=lambda e: e.occurred_at)
    assert summary(a for a in replay(events) if a.rule == RULE) == expected


def test_evidence_has_count_baseline_share_and_samples() -> None:
    events = sorted(
        steady_gain(10, 24) + follows(150, 24 * 60, 0.06, FRESH, "fake"),
        key=lambda e: e.occurred_at,
    )
    (alert,) = [a for a in replay(events) if a.rule == RULE]
    evidence = alert.evidence
    assert evidence["baseline_per_window"] == pytest.approx(10, rel=0.1)
    assert evidence["count"] >= evidence["threshold"] == pytest.approx(8 * 10, rel=0.1)
    assert evidence["low_quality_share"] >= 0.6
    assert evidence["sample_follower_signs"]["fresh_account"] == 20
    assert len(alert.related_ids) == 20 and all(r.startswith("fake") for r in alert.related_ids)
