from __future__ import annotations

import pytest

from service.settings import DetectionSettings, FollowChurnSettings
from tests.events import ev, replay, summary

RULE = "follow_churn"


def churn(
    pairs: int, unfollow_after_minutes: float, followed_back: int = 0, actor: str = "churner"
) -> list:
    """`pairs` follows one minute apart, each unfollowed `unfollow_after_minutes` later; the
    first `followed_back` targets follow back 5 minutes after being followed."""
    events = []
    for i in range(pairs):
        events.append(ev("follow", actor, f"t{i}", i))
        if i < followed_back:
            events.append(ev("follow", f"t{i}", actor, i + 5))
        events.append(ev("unfollow", actor, f"t{i}", i + unfollow_after_minutes))
    return sorted(events, key=lambda e: e.occurred_at)


CASES = [
    # minute: 0..59 follows, 120..179 unfollows (each 2 h later)  -> 60 churned pairs
    ("sixty_churned_pairs", churn(60, 120), [(RULE, "churner", "medium")]),
    ("forty_nine_churned_pairs", churn(49, 120), []),
    ("mostly_followed_back_is_pruning", churn(60, 120, followed_back=40), []),
    (
        "some_followed_back_still_farming",
        churn(60, 120, followed_back=10),
        [(RULE, "churner", "medium")],
    ),
    # unfollow 25 h after the follow: not a churned pair
    ("unfollows_after_a_day", churn(60, 25 * 60), []),
    ("escalates_once", churn(220, 60), [(RULE, "churner", "medium"), (RULE, "churner", "high")]),
    (
        "unfollow_without_seen_follow",
        [ev("unfollow", "churner", f"t{i}", i) for i in range(80)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(e, x) for _, e, x in CASES], ids=[name for name, _, _ in CASES]
)
def test_follow_churn(events: list, expected: list) -> None:
    assert summary(a for a in replay(events) if a.rule == RULE) == expected


def test_evidence_has_follows_unfollows_pairs_and_follow_back_rate() -> None:
    (alert,) = [a for a in replay(churn(60, 120, followed_back=10)) if a.rule == RULE]
    evidence = alert.evidence
    assert evidence["churned_pairs"] == 50
    assert evidence["churned_pairs_followed_back"] == 10
    assert evidence["follows"] == 60
    assert evidence["follow_back_rate"] == pytest.approx(10 / 60, abs=0.001)
    assert len(evidence["sample_event_ids"]) == 20


@pytest.mark.parametrize("window_hours", [2, 6, 24])
def test_any_whole_hour_window_counts_its_churned_pairs(window_hours: int) -> None:
    # minute: 0..59 follows, 30..89 unfollows -> 60 churned pairs over two clock hours, which
    # a window of whole hours (hourly buckets, the current one partly filled) holds from 2 h.
    settings = DetectionSettings(
        follow_churn=FollowChurnSettings(window_seconds=window_hours * 3600)
    )
    alerts = [a for a in replay(churn(60, 30), settings) if a.rule == RULE]
    assert summary(alerts) == [(RULE, "churner", "medium")]


def test_a_window_of_part_hours_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="multiple of 3600"):
        FollowChurnSettings(window_seconds=5400)
