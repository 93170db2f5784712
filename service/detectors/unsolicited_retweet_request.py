"""unsolicited_retweet_request: an account asks strangers to retweet or share its content.
Subject: the requester. Stage 3: tallies what `stranger_check` found, keyed by the requester."""

from __future__ import annotations

from typing import Any, Final

from service.core.context import AlertIntent, Disorder, RequesterContext
from service.core.models import Severity
from service.core.windows import BucketSpec
from service.settings import DetectionSettings

RULE: Final = "unsolicited_retweet_request"
LOGIC_VERSION: Final = "1"
SETTINGS: Final = "unsolicited_retweet_request"


def windows(settings: DetectionSettings, disorder: Disorder) -> dict[str, BucketSpec]:
    return {}  # its window is the list of strangers asked


def detect(ctx: RequesterContext) -> None:
    request = ctx.request
    settings = ctx.config.settings.unsolicited_retweet_request
    window_ms = settings.window_seconds * 1000
    at = request.occurred_at
    oldest = at - window_ms
    strangers: list[list[Any]] = ctx.state.strangers
    strangers[:] = [s for s in strangers if s[1] > oldest and s[0] != request.stranger_id]
    strangers.append([request.stranger_id, at, request.event_id])
    # Past the high bar more strangers change nothing: keep the state bounded.
    if len(strangers) > settings.high_distinct_strangers:
        del strangers[0]
    distinct = len(strangers)
    if distinct >= settings.high_distinct_strangers:
        severity = Severity.HIGH
    elif distinct >= settings.medium_distinct_strangers:
        severity = Severity.MEDIUM
    else:
        severity = Severity.LOW
    first = min(s[1] for s in strangers)
    if distinct == 1:
        summary = (
            f"{request.requester_id} asked {request.stranger_id}, who does not follow or engage "
            f"with them, to retweet or share their content."
        )
    else:
        minutes = max(1, round((at - first) / 60_000))
        summary = (
            f"{request.requester_id} asked {distinct} strangers to retweet or share their "
            f"content within {minutes} min."
        )
    ctx.effects.alerts.append(
        AlertIntent(
            rule=RULE,
            subject_id=request.requester_id,
            severity=severity,
            at_ms=at,
            window_start_ms=first,
            window_end_ms=at,
            related_ids=[s[0] for s in strangers],
            evidence={
                "distinct_strangers": distinct,
                "strangers": [s[0] for s in strangers],
                "thresholds": {
                    "window_seconds": settings.window_seconds,
                    "medium_distinct_strangers": settings.medium_distinct_strangers,
                    "high_distinct_strangers": settings.high_distinct_strangers,
                    "relationship_horizon_days": settings.relationship_horizon_days,
                },
                "sample_event_ids": [s[2] for s in strangers][-20:],
            },
            summary=summary,
            episode_gap_ms=window_ms,
        )
    )
