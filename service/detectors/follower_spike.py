"""follower_spike: an account gains followers far above its own baseline, mostly from accounts
that look bought. Subject: the account gaining followers (stage 2).

Purchases come at every speed, so four windows are judged: 10 minutes, 1 h, 6 h and 24 h, each
against the account's own average gain at that scale and a floor for quiet accounts. Floors
fall (by up to `floor_relief`) as the share of bought-looking followers rises. The alert names
the low-quality followers of its window (the latest `named_followers`) in `related_ids`.

State per account: 1-minute rows for the 10-minute window, 15-minute rows for 24 h (≤ 99
rows of 3 ints), and ≤ `named_followers` follower samples."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

from service.core.context import (
    FAST_FOLLOWER,
    FOLLOWS_FAR_MORE,
    FRESH_ACCOUNT,
    LOCKSTEP,
    NO_POSTS,
    ONLY_FOLLOWS,
    QUALITY_SIGNS,
    ActorContext,
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
LOGIC_VERSION: Final = "2"
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


def target_hash(account_id: str) -> int:
    """A stable 32-bit hash of a followed account, as lockstep keeps and compares them."""
    return zlib.crc32(account_id.encode())


def co_follows(config: Config, event: Event, actor: ActorState) -> tuple[int, ...]:
    """Stage 1 fact: the other accounts (hashed) the follower followed in the lockstep window
    before this follow."""
    recent = actor.recent_follows
    if not recent:
        return ()
    since = event.occurred_at - config.settings.follower_spike.lockstep_window_seconds * 1000
    followed = target_hash(event.target_id or "")
    return tuple(
        dict.fromkeys(
            h for h, at in recent if at > since and at <= event.occurred_at and h != followed
        )
    )


def track_follows(ctx: ActorContext) -> None:
    """Stage 1: keep the actor's latest follows for `co_follows` (at most
    `lockstep_follows_kept`, none older than the lockstep window)."""
    event = ctx.event
    if event.type is not EventType.FOLLOW or event.target_id is None:
        return
    settings = ctx.config.settings.follower_spike
    recent = ctx.state.recent_follows
    at = event.occurred_at
    recent.append([target_hash(event.target_id), at])
    if len(recent) > 1 and recent[-2][1] > at:  # out of order: keep them sorted by time
        recent.sort(key=lambda follow: follow[1])
    newest = recent[-1][1]
    since = newest - settings.lockstep_window_seconds * 1000
    while recent and recent[0][1] <= since:
        del recent[0]
    if len(recent) > settings.lockstep_follows_kept:
        del recent[: len(recent) - settings.lockstep_follows_kept]


# A lockstep entry: [at_ms, follower_id, event_id, [target_hash, ...], counted_low_quality]
L_AT, L_FOLLOWER, L_EVENT, L_HASHES, L_COUNTED = range(5)


def lockstep_group(ctx: TargetContext, counted: bool) -> list[list[Any]]:
    """CopyCatch's sign, bounded: the target's recent followers that, like this one, had just
    followed another same account. Returns the group (this follower's entry last) once it
    holds `lockstep_min_followers`, else nothing. Keeps at most `lockstep_followers_kept`."""
    message = ctx.message
    hashes = message.co_follows
    if not hashes:
        return []
    settings = ctx.config.settings.follower_spike
    at = message.occurred_at
    window_ms = settings.lockstep_window_seconds * 1000
    entries = ctx.state.lockstep
    if entries and entries[0][L_AT] <= at - window_ms:
        entries[:] = [e for e in entries if e[L_AT] > at - window_ms]
    mine = set(hashes)
    shared = settings.lockstep_min_shared
    group = [
        e
        for e in entries
        if abs(e[L_AT] - at) < window_ms and len(mine.intersection(e[L_HASHES])) >= shared
    ]
    entry = [at, message.actor_id, message.event_id, list(hashes), int(counted)]
    entries.append(entry)
    if len(entries) > settings.lockstep_followers_kept:
        del entries[: len(entries) - settings.lockstep_followers_kept]
    if len(group) + 1 < settings.lockstep_min_followers:
        return []
    group.append(entry)
    return group


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
    quality = message.follower_quality
    samples = state.spike_samples
    # Followers moving in lockstep look bought whatever their profiles say; those of the group
    # not counted as low quality yet are counted now, at the time they followed.
    for member in lockstep_group(ctx, counted=bool(quality)):
        if member[L_COUNTED] and member[L_EVENT] != message.event_id:
            continue
        member[L_COUNTED] = 1
        if member[L_EVENT] == message.event_id:
            quality |= LOCKSTEP
            continue
        add(state.spike, spec, member[L_AT], LOW_QUALITY)
        add(state.spike_long, long_spec, member[L_AT], LOW_QUALITY)
        samples.append([member[L_FOLLOWER], member[L_AT], member[L_EVENT], LOCKSTEP])
    if not quality:
        # A real-looking follower only lowers the share: the judgement waits for the next
        # bought-looking one. Most follows of a popular account end here, unjudged.
        return
    add(state.spike, spec, at, LOW_QUALITY)
    add(state.spike_long, long_spec, at, LOW_QUALITY)
    samples.append([message.actor_id, at, message.event_id, quality])
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
