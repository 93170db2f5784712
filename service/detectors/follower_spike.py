"""follower_spike: an account gains followers far above its own baseline, mostly from accounts
that look bought. Subject: the account gaining followers (stage 2)."""

from __future__ import annotations

from typing import Final

from service.core.context import (
    FAST_FOLLOWER,
    FOLLOWS_FAR_MORE,
    FRESH_ACCOUNT,
    NO_POSTS,
    QUALITY_SIGNS,
    AlertIntent,
    Config,
    TargetContext,
)
from service.core.models import Event, EventType, Severity
from service.core.state import GIVEN_FOLLOW, RECEIVED_FOLLOW, ActorState
from service.core.windows import DAY_MS, HOUR_MS, WINDOW_1H, WINDOW_7D, add, totals

RULE: Final = "follower_spike"
FOLLOWS, LOW_QUALITY = 0, 1
MAX_SAMPLES = 20


def follower_quality(config: Config, event: Event, actor: ActorState) -> int:
    """Stage 1 fact: the signs that this follower looks bought (QUALITY_SIGNS bits)."""
    settings = config.settings.follower_spike
    signs = 0
    snapshot = event.actor
    if snapshot is not None:
        created = snapshot.created_at
        if (
            created is not None
            and event.occurred_at - created < settings.fresh_account_days * DAY_MS
        ):
            signs |= FRESH_ACCOUNT
        following = snapshot.following_count
        if following is not None and following >= settings.min_following_for_ratio:
            followers = snapshot.followers_count or 0
            if following >= settings.follow_ratio * max(followers, 1):
                signs |= FOLLOWS_FAR_MORE
        if snapshot.posts_count == 0:
            signs |= NO_POSTS
    recent_follows = actor.given.total(
        config.given_levels, GIVEN_FOLLOW, event.occurred_at, WINDOW_1H
    )
    if recent_follows >= settings.fast_follows_per_hour:
        signs |= FAST_FOLLOWER
    return signs


def detect(ctx: TargetContext) -> None:
    message = ctx.message
    if message.type is not EventType.FOLLOW:
        return
    state = ctx.state
    spec = ctx.config.spike_spec
    at = message.occurred_at
    add(state.spike, spec, at, FOLLOWS)
    if message.follower_quality:
        add(state.spike, spec, at, LOW_QUALITY)
        samples = state.spike_samples
        samples.append([message.actor_id, at, message.event_id, message.follower_quality])
        if len(samples) > MAX_SAMPLES:
            del samples[0]

    settings = ctx.config.settings.follower_spike
    window_ms = settings.window_seconds * 1000
    count, low_quality = totals(state.spike, spec, at, window_ms)
    if count < settings.min_follows:
        return
    baseline = _baseline_per_window(ctx, count, window_ms)
    bar = max(settings.min_follows, settings.baseline_multiplier * baseline)
    if count < bar:
        return
    share = low_quality / count
    if share < settings.min_low_quality_share:
        return
    high_bar = bar * settings.high_multiplier
    severity = Severity.HIGH if count >= high_bar else Severity.MEDIUM
    in_window = [s for s in state.spike_samples if s[1] > at - window_ms]
    sign_counts = {
        name: sum(1 for s in in_window if s[3] & bit) for bit, name in QUALITY_SIGNS.items()
    }
    minutes = settings.window_seconds // 60
    ctx.effects.alerts.append(
        AlertIntent(
            rule=RULE,
            subject_id=message.target_id,
            severity=severity,
            at_ms=at,
            window_start_ms=at - window_ms,
            window_end_ms=at,
            related_ids=[s[0] for s in in_window],
            evidence={
                "count": count,
                "low_quality_count": low_quality,
                "low_quality_share": round(share, 3),
                "baseline_per_window": round(baseline, 3),
                "threshold": round(bar, 3),
                "sample_follower_signs": sign_counts,
                "thresholds": {
                    "window_seconds": settings.window_seconds,
                    "min_follows": settings.min_follows,
                    "baseline_multiplier": settings.baseline_multiplier,
                    "min_low_quality_share": settings.min_low_quality_share,
                    "high_multiplier": settings.high_multiplier,
                },
                "sample_event_ids": [s[2] for s in in_window],
            },
            summary=(
                f"{message.target_id} gained {count} followers in {minutes} min against a "
                f"baseline of {baseline:.1f}; {share:.0%} of them look bought (fresh, no posts, "
                f"following far more than followed, or following fast)."
            ),
            episode_gap_ms=window_ms,
        )
    )


def _baseline_per_window(ctx: TargetContext, current: int, window_ms: int) -> float:
    """The account's own average follower gain per window over up to 7 days, this window
    excluded. Quiet or new accounts get 0 and fall back to the floor."""
    state = ctx.state
    at = ctx.message.occurred_at
    history_ms = min(WINDOW_7D, at - state.first_seen)
    if history_ms < HOUR_MS:
        return 0.0
    week = state.received.total(ctx.config.received_levels, RECEIVED_FOLLOW, at, WINDOW_7D)
    earlier = max(0, week - current)
    return earlier * window_ms / history_ms
