from __future__ import annotations

import pytest

from service.core.replay import Replayer
from service.settings import DetectionSettings
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


def pool(
    size: int,
    customers: list[str],
    snapshot: dict | None = ESTABLISHED,
    every: float = 0.1,
    start: float = 0,
) -> list:
    """`size` accounts follow each customer in turn, customer k from minute `start` + k."""
    return [
        ev("follow", f"pool{i}", customer, start + k + i * every, snapshot=snapshot)
        for k, customer in enumerate(customers)
        for i in range(size)
    ]


# The first customer sees nothing shared; the others see the group.
LOCKSTEP_ALERTS = [(RULE, "cust-b", "medium"), (RULE, "shop", "medium")]


def steady_gain(per_10_min: int, hours: int) -> list:
    """Organic follows from established accounts, evenly spread."""
    every = 10 / per_10_min
    return follows(per_10_min * hours * 6, 0, every, ESTABLISHED, "fan")


CASES = [
    # minute: 0 ... 5         40 fresh follows in 5 min, no history: floor of 30 applies
    ("purchase_on_quiet_account", follows(40, 0, 0.125, FRESH, "fake"), [(RULE, "shop", "medium")]),
    ("organic_bump_from_established", follows(45, 0, 0.2, ESTABLISHED, "fan"), []),
    # Floors fall with the evidence: at 100 % bought-looking the 10-minute floor is 30 x 0.5.
    ("below_the_lowest_floor", follows(12, 0, 0.4, FRESH, "fake"), []),
    (
        "all_bought_clears_the_lowered_floor",
        follows(25, 0, 0.2, FRESH, "fake"),
        [(RULE, "shop", "medium")],
    ),
    # 15 fresh + 10 established: 60 % bought-looking, the floor stays at 30
    (
        "just_enough_bought_keeps_the_full_floor",
        follows(15, 0, 0.33, FRESH, "fake") + follows(10, 0.1, 0.5, ESTABLISHED, "fan"),
        [],
    ),
    # Purchases at every speed, into a quiet account:
    # hours 0..2: 200 fresh, one every 36 s (17 per 10 min, 100 per hour)
    ("drip_of_200_over_2_hours", follows(200, 0, 0.6, FRESH, "fake"), [(RULE, "shop", "medium")]),
    # hours 0..24: 1000 fresh, one every 86 s (7 per 10 min, 42 per hour, 250 per 6 h): the
    # 1 h window fires at 25 (50 x 0.5), the 6 h one reaches high at 5 x 50 after 6 h
    (
        "drip_of_1000_over_24_hours",
        follows(1000, 0, 1.44, FRESH, "fake"),
        [(RULE, "shop", "medium"), (RULE, "shop", "high")],
    ),
    # hours 0..24: 200 fresh, one every 7.2 min (8 per hour, 50 per 6 h, 200 per day)
    ("drip_of_200_over_24_hours", follows(200, 0, 7.2, FRESH, "fake"), [(RULE, "shop", "medium")]),
    # hours 0..24: 60 fresh, one every 24 min: under every floor (24 h: 150 x 0.5)
    ("drip_of_60_over_24_hours", follows(60, 0, 24, FRESH, "fake"), []),
    # hours 0..24: 90 fresh, one every 16 min (22 per 6 h): only the 24 h window sees it
    ("drip_of_90_over_24_hours", follows(90, 0, 16, FRESH, "fake"), [(RULE, "shop", "medium")]),
    # Followers with no snapshot are judged by what the stream shows of them:
    # minute 0..5: 40 follows from accounts seen doing nothing else -> bought-looking
    ("no_snapshot_only_follows", follows(40, 0, 0.125, None, "ghost"), [(RULE, "shop", "medium")]),
    # minute 0..5: 20 fresh fakes and 20 ghosts: the ghosts do not dilute the share
    (
        "no_snapshot_does_not_dilute",
        follows(20, 0, 0.25, FRESH, "fake") + follows(20, 0.1, 0.25, None, "ghost"),
        [(RULE, "shop", "medium")],
    ),
    # minute 0..10: 40 readers each retweet someone; minute 20..25: they all follow the shop
    (
        "no_snapshot_but_taking_part",
        [ev("retweet", f"reader{i}", "author", i * 0.25) for i in range(40)]
        + follows(40, 20, 0.125, None, "reader"),
        [],
    ),
    # Near-miss: a featured account gains 400 established followers within the hour
    ("featured_account_gains_established_followers", follows(400, 0, 0.15, ESTABLISHED, "fan"), []),
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
    # Lockstep (CopyCatch): a pool of real-looking accounts serves three customers in turn.
    # minute 0..3  30 pool accounts follow cust-a   (nothing shared yet: unjudged)
    # minute 1..4  the same 30 follow cust-b        (each had just followed cust-a)
    # minute 2..5  the same 30 follow shop          (each had just followed cust-a and cust-b)
    ("pool_in_lockstep", pool(30, ["cust-a", "cust-b", "shop"]), LOCKSTEP_ALERTS),
    # The same from accounts without snapshots that took part (each retweeted at minute 0..3),
    # so that only the lockstep gives them away; the pool starts at minute 30
    (
        "pool_in_lockstep_no_snapshot",
        [ev("retweet", f"pool{i}", "author", i * 0.1) for i in range(30)]
        + pool(30, ["cust-a", "cust-b", "shop"], None, start=30),
        LOCKSTEP_ALERTS,
    ),
    # Near-miss: fans of an author follow the shop too, but hours apart (outside the window)
    # minute 0..30: 30 fans follow author; hour 3..3.5: they follow the shop
    (
        "fans_of_two_accounts_hours_apart",
        follows(30, 0, 1, ESTABLISHED, "fan", target="author")
        + follows(30, 180, 1, ESTABLISHED, "fan"),
        [],
    ),
    # Near-miss: 4 move together (under lockstep_min_followers), 26 organic fans besides
    (
        "four_in_step_is_not_lockstep",
        pool(4, ["cust-a", "shop"]) + follows(26, 1, 0.2, ESTABLISHED, "fan"),
        [],
    ),
    # Near-miss: a creator's fans each follow one random other account, then the creator
    (
        "fans_who_followed_different_others",
        [ev("follow", f"fan{i}", f"other{i}", i * 0.1, snapshot=ESTABLISHED) for i in range(40)]
        + follows(40, 1, 0.1, ESTABLISHED, "fan"),
        [],
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
    named = evidence["named_followers"]
    assert evidence["sample_follower_signs"]["fresh_account"] == named
    assert len(alert.related_ids) == named
    assert all(r.startswith("fake") for r in alert.related_ids)


@pytest.mark.parametrize(
    ("name", "events", "window"),
    [
        ("10 minutes", follows(40, 0, 0.125, FRESH, "fake"), "10 min"),
        ("1 hour", follows(1000, 0, 1.44, FRESH, "fake"), "1 h"),
        ("6 hours", follows(200, 0, 7.2, FRESH, "fake"), "6 h"),
        ("24 hours", follows(90, 0, 16, FRESH, "fake"), "24 h"),
    ],
)
def test_the_evidence_says_which_window_fired(name: str, events: list, window: str) -> None:
    first = next(a for a in replay(events) if a.rule == RULE)
    assert first.evidence["window"] == window


def test_the_alert_names_the_bought_followers_of_its_window() -> None:
    # minute 0..60: 30 established fans; minute 60..65: 40 fresh fakes
    events = sorted(
        follows(30, 0, 2, ESTABLISHED, "fan") + follows(40, 60, 0.125, FRESH, "fake"),
        key=lambda e: e.occurred_at,
    )
    (alert,) = [a for a in replay(events) if a.rule == RULE]
    assert alert.related_ids
    assert all(r.startswith("fake") for r in alert.related_ids)
    assert alert.evidence["named_followers"] == len(alert.related_ids)


def test_lockstep_counts_the_group_and_names_its_earlier_members() -> None:
    # minute 0..3: 30 pool accounts follow cust-a; minute 2..5: they follow the shop
    events = sorted(pool(30, ["cust-a", "shop"], every=0.1), key=lambda e: e.occurred_at)
    (alert,) = [a for a in replay(events) if a.rule == RULE]
    assert alert.subject_id == "shop"
    evidence = alert.evidence
    assert evidence["low_quality_share"] == 1.0
    # The first four were real-looking when they came; the fifth made them a group.
    assert evidence["sample_follower_signs"]["follows_in_lockstep"] == evidence["named_followers"]
    assert {"pool0", "pool1", "pool2", "pool3", "pool4"} <= set(alert.related_ids)


def test_lockstep_state_stays_bounded() -> None:
    settings = DetectionSettings()
    spike = settings.follower_spike
    # One account follows 100 others a minute apart; 100 pool accounts follow the shop.
    busy = [ev("follow", "busy", f"other{i}", i * 0.5) for i in range(100)]
    crowd = pool(100, ["cust-a", "shop"], every=0.05)
    replayer = Replayer(settings, lambda: 1_900_000_000_000)
    for event in sorted(busy + crowd, key=lambda e: e.occurred_at):
        replayer.submit(event)
    actor = replayer.tables.actors["busy"]
    assert 0 < len(actor.recent_follows) <= spike.lockstep_follows_kept
    shop = replayer.tables.targets["shop"]
    assert 0 < len(shop.lockstep) <= spike.lockstep_followers_kept
