from __future__ import annotations

import pytest

from service.core.reciprocity import usage_mode
from service.core.replay import Replayer
from service.settings import DetectionSettings
from tests.events import FIXED_NOW, ev


@pytest.mark.parametrize(
    ("given_engagement", "posts", "given_any", "received", "mode"),
    [
        (0, 0, 0, 12, "dormant"),  # receives, but did nothing itself for 7 d
        (0, 0, 40, 0, "consumer"),  # follows, never engages
        (30, 0, 30, 0, "consumer"),  # a taker: gives, gets nothing back
        (10, 2, 12, 12, "reciprocator"),
        (10, 0, 10, 4, "reciprocator"),  # 0.4 is within [1/3, 3]
        (10, 0, 10, 2, "consumer"),  # 0.2 is not
        (2, 5, 7, 60, "broadcaster"),
        (0, 1, 1, 3, "broadcaster"),
        (0, 0, 1, 30, "consumer"),  # followed a lot but never posts: not broadcasting
    ],
)
def test_usage_mode(
    given_engagement: int, posts: int, given_any: int, received: int, mode: str
) -> None:
    assert usage_mode(given_engagement, posts, given_any, received) == mode


def test_profile_counts_given_received_and_follow_backs() -> None:
    # alice follows bob and carol; bob follows back; alice posts, bob and carol engage with her.
    events = [
        ev("follow", "alice", "bob", 0),
        ev("follow", "alice", "carol", 1),
        ev("follow", "bob", "alice", 2),
        ev("post", "alice", None, 3, text="hello"),
        ev("retweet", "bob", "alice", 4),
        ev("reply", "carol", "alice", 5, text="hi"),
        ev("mention", "alice", "bob", 6, text="thanks @bob"),
        ev("reply", "alice", "alice", 7, text="self-thread does not count"),
    ]
    replayer = Replayer(DetectionSettings(), lambda: FIXED_NOW)
    for event in events:
        replayer.submit(event)
    replayer.flush()
    profile = replayer.profile("alice")
    hour = profile["windows"]["1h"]
    assert hour["given"] == {"follow": 2, "unfollow": 0, "retweet": 0, "reply": 0, "mention": 1}
    assert hour["received"] == {"follow": 1, "unfollow": 0, "retweet": 1, "reply": 1, "mention": 0}
    assert hour["posts"] == 1
    assert hour["follow_backs"] == 1
    assert hour["follow_back_rate"] == 0.5
    assert hour["reciprocity_ratio"] == 2.0
    assert profile["windows"]["7d"] == {**hour}
    assert profile["usage_mode"] == "reciprocator"
    assert replayer.profile("nobody")["usage_mode"] == "dormant"
