"""The stranger check (stage 2) and the requester's tally (stage 3), end to end in replay."""

from __future__ import annotations

import pytest

from tests.events import ev, replay, summary

RULE = "unsolicited_retweet_request"
ASK = "please RT my pinned post"
DAY = 24 * 60


def asks(strangers: int, every_minutes: float = 3, start: float = 0, text: str = ASK) -> list:
    return [
        ev("mention", "asker", f"s{i}", start + i * every_minutes, text=text)
        for i in range(strangers)
    ]


CASES = [
    ("one_stranger", asks(1), [(RULE, "asker", "low")]),
    ("friend_who_follows", [ev("follow", "s0", "asker", 0), *asks(1, start=10)], []),
    ("retweeted_ten_days_ago", [ev("retweet", "s0", "asker", 0), *asks(1, start=10 * DAY)], []),
    (
        "replied_ten_days_ago",
        [ev("reply", "s0", "asker", 0, text="great point"), *asks(1, start=10 * DAY)],
        [],
    ),
    (
        "retweeted_a_hundred_days_ago",
        [ev("retweet", "s0", "asker", 0), *asks(1, start=100 * DAY)],
        [(RULE, "asker", "low")],
    ),
    (
        "asker_following_does_not_make_acquainted",
        [ev("follow", "asker", "s0", 0), ev("retweet", "asker", "s0", 1), *asks(1, start=10)],
        [(RULE, "asker", "low")],
    ),
    (
        "follower_who_unfollowed_is_a_stranger",
        [ev("follow", "s0", "asker", 0), ev("unfollow", "s0", "asker", 5), *asks(1, start=10)],
        [(RULE, "asker", "low")],
    ),
    ("three_strangers_in_an_hour", asks(3), [(RULE, "asker", "low"), (RULE, "asker", "medium")]),
    (
        "ten_strangers_in_an_hour",
        asks(10),
        [(RULE, "asker", "low"), (RULE, "asker", "medium"), (RULE, "asker", "high")],
    ),
    # minute: 0   40   80      three strangers, but never three inside one hour
    ("three_strangers_spread_out", asks(3, every_minutes=40), [(RULE, "asker", "low")]),
    (
        "same_stranger_five_times",
        [ev("mention", "asker", "s0", i, text=ASK) for i in range(5)],
        [(RULE, "asker", "low")],
    ),
    ("old_style_quote_is_not_a_request", asks(3, text="RT @news: big announcement"), []),
    ("thanks_is_not_a_request", asks(3, text="thanks for the RT!"), []),
    (
        "retweet_of_stranger_is_not_a_request",
        [ev("retweet", "asker", f"s{i}", i) for i in range(5)],
        [],
    ),
    ("self_mention", [ev("mention", "asker", "asker", 0, text=ASK)], []),
    (
        "mixed_friends_and_strangers",
        [ev("follow", "s0", "asker", 0), ev("follow", "s1", "asker", 0), *asks(4, start=10)],
        [(RULE, "asker", "low")],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(e, x) for _, e, x in CASES], ids=[name for name, _, _ in CASES]
)
def test_unsolicited_retweet_request(events: list, expected: list) -> None:
    assert summary(a for a in replay(events) if a.rule == RULE) == expected


def test_evidence_lists_strangers_and_events() -> None:
    alerts = [a for a in replay(asks(3)) if a.rule == RULE]
    medium = alerts[-1]
    assert medium.evidence["distinct_strangers"] == 3
    assert medium.related_ids == ["s0", "s1", "s2"]
    assert len(medium.evidence["sample_event_ids"]) == 3
    assert "3 strangers" in medium.summary
    # Same episode, different severity: different ids, same episode start.
    assert alerts[0].alert_id != medium.alert_id
    assert alerts[0].evidence["episode_started_at"] == medium.evidence["episode_started_at"]
