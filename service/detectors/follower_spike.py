"""follower_spike: an account gains followers far above its own baseline, mostly from accounts
that look bought. Subject: the account gaining followers (stage 2).

Purchases come at every speed, so four windows are judged: 10 minutes, 1 h, 6 h and 24 h, each
against the account's own average gain at that scale and a floor for quiet accounts. Floors
fall (by up to `floor_relief`) as the share of bought-looking followers rises. The alert names
the low-quality followers of its window (the latest `named_followers`) in `related_ids`.

State per account: 1-minute rows for the 10-minute window, 15-minute rows for 24 h (≤ 99
rows of 3 ints), and ≤ `named_followers` follower samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from service.core.context import (
    FAST_FOLLOWER,
    FOLLOWS_FAR_MORE,
    FRESH_ACCOUNT,
    NO_POSTS,
    ONLY_FOLLOWS,
    QUALITY_SIGNS,
    AlertIntent,
    Config,
    Disorder,
    TargetContext,
    keep_for,
)
from service.core.models import Event, EventType, Severity
from service.core.state import (
    GIVEN_FOLLOW,
    GIVEN_MENTION,
    GIVEN_POST,
    GIVEN_REPLY,
    GIVEN_RETWEET,
    RECEIVED_FOLLOW,
    ActorState,
)
from service.core.windows import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    WINDOW_1H,
    WINDOW_7D,
    BucketSpec,
    add,
    totals,
    totals_over,
)
from service.settings import DetectionSettings, FollowerSpikeSettings

RULE: Final = "follower_spike"
LOGIC_VERSION: Final = "1"
SETTINGS: Final = "follower_spike"
MINUTES: Final = "follower_spike.minutes"  # the 10-minute window, in 1-minute rows
QUARTERS: Final = "follower_spike.quarters"  # 1 h, 6 h and 24 h, in 15-minute rows
FOLLOWS, LOW_QUALITY = 0, 1
ENGAGING_KINDS = (GIVEN_POST, GIVEN_RETWEET, GIVEN_REPLY, GIVEN_MENTION)


def windows(settings: DetectionSettings, disorder: Disorder) -> dict[str, BucketSpec]:
    spike = settings.follower_spike
    quarter = 15 * MINUTE_MS
    return {
        MINUTES: BucketSpec(
            MINUTE_MS, keep_for(spike.window_seconds * 1000, MINUTE_MS, disorder.incoming_ms), 2
        ),
        QUARTERS: BucketSpec(quarter, keep_for(DAY_MS, quarter, disorder.incoming_ms), 2),
    }


def follower_quality(config: Config, event: Event, actor: ActorState) -> int:
    """Stage 1 fact: the signs that this follower looks bought (QUALITY_SIGNS bits)."""
    settings = config.settings.follower_spike
    signs = 0
    snapshot = event.actor
    if snapshot is None:
        # No profile to judge by, so judge by what the stream shows: an account that in the
        # last 7 days posted, retweeted, replied and mentioned nothing, only followed, is what
        # a bought follower looks like; one that takes part is not diluted away as unknown.
        given, levels, at = actor.given, config.given_levels, event.occurred_at
        if not any(given.total(levels, kind, at, WINDOW_7D) for kind in ENGAGING_KINDS):
            signs |= ONLY_FOLLOWS
    else:
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


@dataclass(frozen=True, slots=True)
class Scale:
    window_ms: int
    floor: int
    label: str


# The windows read from 15-minute rows, for purchases dripped over hours.
LONG_SPANS = (HOUR_MS, 6 * HOUR_MS, DAY_MS)


def scales(settings: FollowerSpikeSettings) -> tuple[Scale, ...]:
    """The windows judged, shortest first: the contract's 10 minutes, then `LONG_SPANS`."""
    floors = (settings.min_follows_1h, settings.min_follows_6h, settings.min_follows_24h)
    return (
        Scale(
            settings.window_seconds * 1000,
            settings.min_follows,
            f"{settings.window_seconds // 60} min",
        ),
        *(
            Scale(span, floor, f"{span // HOUR_MS} h")
            for span, floor in zip(LONG_SPANS, floors, strict=True)
        ),
    )


def detect(ctx: TargetContext) -> None:
    message = ctx.message
    if message.type is not EventType.FOLLOW:
        return
    state = ctx.state
    config = ctx.config
    spec, long_spec = config.windows[MINUTES], config.windows[QUARTERS]
    settings = config.settings.follower_spike
    at = message.occurred_at
    add(state.spike, spec, at, FOLLOWS)
    add(state.spike_long, long_spec, at, FOLLOWS)
    if not message.follower_quality:
        # A real-looking follower only lowers the share: the judgement waits for the next
        # bought-looking one. Most follows of a popular account end here, unjudged.
        return
    add(state.spike, spec, at, LOW_QUALITY)
    add(state.spike_long, long_spec, at, LOW_QUALITY)
    samples = state.spike_samples
    samples.append([message.actor_id, at, message.event_id, message.follower_quality])
    if len(samples) > settings.named_followers:
        del samples[: len(samples) - settings.named_followers]

    relief = settings.floor_relief
    counts = [
        totals(state.spike, spec, at, settings.window_seconds * 1000),
        *totals_over(state.spike_long, long_spec, at, LONG_SPANS),
    ]
    fired: tuple[Severity, Scale, int, int, float, float, float] | None = None
    week = -1
    for scale, (count, low_quality) in zip(scales(settings), counts, strict=True):
        if count < scale.floor * (1 - relief):
            continue  # below the lowest the floor can fall to
        share = low_quality / count
        if share < settings.min_low_quality_share:
            continue
        floor = scale.floor * (1 - relief * _certainty(share, settings.min_low_quality_share))
        if count < floor:
            continue
        if week < 0:
            week = state.received.total(config.received_levels, RECEIVED_FOLLOW, at, WINDOW_7D)
        baseline = _baseline_per_window(ctx, week, count, scale.window_ms)
        bar = max(floor, settings.baseline_multiplier * baseline)
        if count < bar:
            continue
        severity = Severity.HIGH if count >= bar * settings.high_multiplier else Severity.MEDIUM
        if fired is None or severity.rank > fired[0].rank:
            fired = (severity, scale, count, low_quality, share, baseline, bar)
    if fired is None:
        return
    severity, scale, count, low_quality, share, baseline, bar = fired
    window_ms = scale.window_ms
    named = [s for s in state.spike_samples if s[1] > at - window_ms]
    sign_counts = {name: sum(1 for s in named if s[3] & bit) for bit, name in QUALITY_SIGNS.items()}
    ctx.effects.alerts.append(
        AlertIntent(
            rule=RULE,
            subject_id=message.target_id,
            severity=severity,
            at_ms=at,
            window_start_ms=at - window_ms,
            window_end_ms=at,
            related_ids=[s[0] for s in named],
            evidence={
                "window": scale.label,
                "window_seconds": window_ms // 1000,
                "count": count,
                "low_quality_count": low_quality,
                "low_quality_share": round(share, 3),
                "baseline_per_window": round(baseline, 3),
                "threshold": round(bar, 3),
                "named_followers": len(named),
                "sample_follower_signs": sign_counts,
                "thresholds": {
                    "window_seconds": settings.window_seconds,
                    "min_follows": settings.min_follows,
                    "min_follows_1h": settings.min_follows_1h,
                    "min_follows_6h": settings.min_follows_6h,
                    "min_follows_24h": settings.min_follows_24h,
                    "floor_relief": relief,
                    "baseline_multiplier": settings.baseline_multiplier,
                    "min_low_quality_share": settings.min_low_quality_share,
                    "high_multiplier": settings.high_multiplier,
                },
                "sample_event_ids": [s[2] for s in named][-20:],
            },
            summary=(
                f"{message.target_id} gained {count} followers in {scale.label} against a "
                f"baseline of {baseline:.1f}; {share:.0%} of them look bought (fresh, no posts, "
                f"following far more than followed, or following fast)."
            ),
            # A purchase that goes on tripping a window stays one episode.
            episode_gap_ms=window_ms,
        )
    )


def _certainty(share: float, min_share: float) -> float:
    """0 at the minimum low-quality share, 1 when every new follower looks bought."""
    if min_share >= 1.0:
        return 1.0
    return min(1.0, max(0.0, (share - min_share) / (1.0 - min_share)))


def _baseline_per_window(ctx: TargetContext, week: int, current: int, window_ms: int) -> float:
    """The account's own average follower gain per window over up to 7 days, this window
    excluded. Quiet or new accounts get 0 and fall back to the floor."""
    state = ctx.state
    at = ctx.message.occurred_at
    history_ms = min(WINDOW_7D, at - state.first_seen)
    if history_ms < HOUR_MS:
        return 0.0
    earlier = max(0, week - current)
    # The history before this window, or at least one window's worth (a young account).
    return earlier * window_ms / max(history_ms - window_ms, window_ms)
