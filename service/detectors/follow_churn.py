"""follow_churn: an account that follows and soon unfollows many accounts that did not follow
back is farming follow-backs. Subject: the actor."""

from __future__ import annotations

from typing import Final

from service.core.context import ActorContext, AlertIntent, Config, Disorder, keep_for
from service.core.models import EventType, Severity
from service.core.state import GIVEN_FOLLOW, RECEIVED_FOLLOW_BACK
from service.core.windows import HOUR_MS, BucketSpec, add, totals
from service.settings import DetectionSettings

RULE: Final = "follow_churn"
LOGIC_VERSION: Final = "1"
SETTINGS: Final = "follow_churn"
HOURS: Final = "follow_churn.hours"  # the 24-hour window, in hourly rows
FOLLOWS, UNFOLLOWS, CHURNED, CHURNED_FOLLOWED_BACK = range(4)
MAX_SAMPLES = 20


def windows(settings: DetectionSettings, disorder: Disorder) -> dict[str, BucketSpec]:
    span_ms = settings.follow_churn.window_seconds * 1000
    return {HOURS: BucketSpec(HOUR_MS, keep_for(span_ms, HOUR_MS, disorder.lateness_ms), 4)}


def churned(config: Config, followed_at: int, unfollowed_at: int) -> bool:
    """Stage 1 fact: does this unfollow churn the pair (it came soon after the follow)?"""
    within_ms = config.settings.follow_churn.churn_within_seconds * 1000
    return 0 <= unfollowed_at - followed_at <= within_ms


def detect(ctx: ActorContext) -> None:
    event = ctx.event
    state = ctx.state
    spec = ctx.config.windows[HOURS]
    at = event.occurred_at
    if event.type is EventType.FOLLOW:
        if ctx.started_follow:
            add(state.churn, spec, at, FOLLOWS)
        return
    if event.type is not EventType.UNFOLLOW:
        return
    add(state.churn, spec, at, UNFOLLOWS)
    if not ctx.churned_pair:
        return
    add(state.churn, spec, at, CHURNED)
    if ctx.churned_pair_followed_back:
        add(state.churn, spec, at, CHURNED_FOLLOWED_BACK)
    samples = state.churn_samples
    samples.append([event.target_id or "", event.event_id])
    if len(samples) > MAX_SAMPLES:
        del samples[0]

    settings = ctx.config.settings.follow_churn
    window_ms = settings.window_seconds * 1000
    follows, unfollows, churned, churned_back = totals(state.churn, spec, at, window_ms)
    if churned < settings.min_churned_pairs:
        return
    churned_back_rate = churned_back / churned
    if churned_back_rate > settings.max_follow_back_rate:
        return
    follow_backs = 0
    if ctx.incoming is not None:
        follow_backs = ctx.incoming.received.total(
            ctx.config.received_levels, RECEIVED_FOLLOW_BACK, at, window_ms
        )
    given_follows = state.given.total(ctx.config.given_levels, GIVEN_FOLLOW, at, window_ms)
    follow_back_rate = follow_backs / given_follows if given_follows else 0.0
    high_bar = settings.min_churned_pairs * settings.high_multiplier
    severity = Severity.HIGH if churned >= high_bar else Severity.MEDIUM
    hours = settings.window_seconds / 3600
    ctx.effects.alerts.append(
        AlertIntent(
            rule=RULE,
            subject_id=event.actor_id,
            severity=severity,
            at_ms=at,
            window_start_ms=at - window_ms,
            window_end_ms=at,
            related_ids=[target for target, _ in samples],
            evidence={
                "follows": follows,
                "unfollows": unfollows,
                "churned_pairs": churned,
                "churned_pairs_followed_back": churned_back,
                "follow_back_rate": round(follow_back_rate, 3),
                "thresholds": {
                    "min_churned_pairs": settings.min_churned_pairs,
                    "churn_within_seconds": settings.churn_within_seconds,
                    "max_follow_back_rate": settings.max_follow_back_rate,
                    "high_churned_pairs": high_bar,
                },
                "sample_event_ids": [event_id for _, event_id in samples],
            },
            summary=(
                f"{event.actor_id} followed and unfollowed {churned} accounts within "
                f"{settings.churn_within_seconds // 3600} h each in the last {hours:g} h; only "
                f"{churned_back} of them followed back: follow-back farming."
            ),
            episode_gap_ms=window_ms,
        )
    )
