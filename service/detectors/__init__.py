"""The detector lists, one per stage. A detector is `detect(ctx) -> None`; see HOWTO."""

from __future__ import annotations

from collections.abc import Callable

from service.core.context import ActorContext, RequesterContext, TargetContext
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
)
TARGET_DETECTORS: tuple[Callable[[TargetContext], None], ...] = (
    follower_spike.detect,
    stranger_check.detect,
)
REQUESTER_DETECTORS: tuple[Callable[[RequesterContext], None], ...] = (
    unsolicited_retweet_request.detect,
)
