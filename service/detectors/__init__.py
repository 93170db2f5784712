"""The registry: the rules, the detector lists (one per stage) and the stage-1 facts. A
detector is `detect(ctx) -> None`; see docs/writing-a-detector.md. A new rule is its module,
its case table and a line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service.core.context import (
    ActorContext,
    Config,
    RequesterContext,
    RuleModule,
    TargetContext,
)
from service.core.models import Event
from service.core.state import ActorState
from service.detectors import (
    duplicate_reply_spam,
    follow_churn,
    follower_spike,
    stranger_check,
    unsolicited_retweet_request,
)

ACTOR_DETECTORS: tuple[Callable[[ActorContext], None], ...] = (
    follow_churn.detect,
    duplicate_reply_spam.detect,
    follower_spike.track_follows,  # no alerts: the follows its stage-1 fact co_follows reads
)
TARGET_DETECTORS: tuple[Callable[[TargetContext], None], ...] = (
    follower_spike.detect,
    stranger_check.detect,
)
REQUESTER_DETECTORS: tuple[Callable[[RequesterContext], None], ...] = (
    unsolicited_retweet_request.detect,
)

# Each declares RULE, LOGIC_VERSION, SETTINGS and windows(): Config builds the bucket layouts
# and rule versions from them.
RULES: tuple[RuleModule, ...] = (
    unsolicited_retweet_request,
    follower_spike,
    follow_churn,
    duplicate_reply_spam,
)


@dataclass(frozen=True)
class Stage1Facts:
    """What stage 1 works out for the rules that need it; the pipeline carries the answers."""

    # bits of QUALITY_SIGNS: how bought the follower of a follow event looks (stage 2 reads it)
    follower_quality: Callable[[Config, Event, ActorState], int]
    # does an unfollow at this time churn a follow made at that one (recorded in the relation)
    churned: Callable[[Config, int, int], bool]
    # the other accounts a follower had just followed (hashed), for follower_spike's lockstep
    co_follows: Callable[[Config, Event, ActorState], tuple[int, ...]]


FACTS = Stage1Facts(
    follower_spike.follower_quality, follow_churn.churned, follower_spike.co_follows
)
