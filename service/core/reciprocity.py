"""The reciprocity profile of one account (contract section 4), read from the same state the
detectors keep."""

from __future__ import annotations

from typing import Any, Literal

from service.core.context import Config
from service.core.models import format_timestamp
from service.core.state import (
    GIVEN_FOLLOW,
    GIVEN_MENTION,
    GIVEN_POST,
    GIVEN_REPLY,
    GIVEN_RETWEET,
    GIVEN_UNFOLLOW,
    RECEIVED_FOLLOW,
    RECEIVED_FOLLOW_BACK,
    RECEIVED_MENTION,
    RECEIVED_REPLY,
    RECEIVED_RETWEET,
    RECEIVED_UNFOLLOW,
    ActorState,
    TargetState,
)
from service.core.windows import WINDOW_1H, WINDOW_7D, WINDOW_24H

UsageMode = Literal["consumer", "reciprocator", "broadcaster", "dormant"]
WINDOWS = {"1h": WINDOW_1H, "24h": WINDOW_24H, "7d": WINDOW_7D}
# A broadcaster receives at least this many times the engagement it gives.
BROADCASTER_RATIO = 3.0
# A reciprocator's ratio of received to given engagement lies within [1/x, x].
BALANCE_RATIO = 3.0


def usage_mode(
    given_engagement: int, posts: int, given_any: int, received_engagement: int
) -> UsageMode:
    if given_any == 0:
        return "dormant"
    if posts > 0 and received_engagement >= BROADCASTER_RATIO * max(given_engagement, 1):
        return "broadcaster"
    if given_engagement > 0 and received_engagement > 0:
        ratio = received_engagement / given_engagement
        if 1 / BALANCE_RATIO <= ratio <= BALANCE_RATIO:
            return "reciprocator"
    return "consumer"


def profile(
    config: Config,
    account_id: str,
    actor: ActorState | None,
    target: TargetState | None,
    now_ms: int,
) -> dict[str, Any]:
    """Counts over 1 h / 24 h / 7 d ending at `now_ms` (event time), ratios and usage mode."""
    windows: dict[str, Any] = {}
    for name, span in WINDOWS.items():
        given = actor.given.totals(config.given_levels, now_ms, span) if actor else [0] * 6
        received = (
            target.received.totals(config.received_levels, now_ms, span) if target else [0] * 6
        )
        given_engagement = given[GIVEN_RETWEET] + given[GIVEN_REPLY] + given[GIVEN_MENTION]
        received_engagement = (
            received[RECEIVED_RETWEET] + received[RECEIVED_REPLY] + received[RECEIVED_MENTION]
        )
        follows = given[GIVEN_FOLLOW]
        windows[name] = {
            "given": {
                "follow": follows,
                "unfollow": given[GIVEN_UNFOLLOW],
                "retweet": given[GIVEN_RETWEET],
                "reply": given[GIVEN_REPLY],
                "mention": given[GIVEN_MENTION],
            },
            "received": {
                "follow": received[RECEIVED_FOLLOW],
                "unfollow": received[RECEIVED_UNFOLLOW],
                "retweet": received[RECEIVED_RETWEET],
                "reply": received[RECEIVED_REPLY],
                "mention": received[RECEIVED_MENTION],
            },
            "posts": given[GIVEN_POST],
            "follow_backs": received[RECEIVED_FOLLOW_BACK],
            "reciprocity_ratio": (
                round(received_engagement / given_engagement, 3) if given_engagement else None
            ),
            "follow_back_rate": (
                round(received[RECEIVED_FOLLOW_BACK] / follows, 3) if follows else None
            ),
        }
    week = windows["7d"]
    given_week = week["given"]
    mode = usage_mode(
        given_engagement=given_week["retweet"] + given_week["reply"] + given_week["mention"],
        posts=week["posts"],
        given_any=sum(given_week.values()) + week["posts"],
        received_engagement=(
            week["received"]["retweet"] + week["received"]["reply"] + week["received"]["mention"]
        ),
    )
    return {
        "user_id": account_id,
        "as_of": format_timestamp(now_ms),
        "usage_mode": mode,
        "windows": windows,
    }
