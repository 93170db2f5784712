"""Small builders for events and a replay on in-memory state, shared by the tests."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from service.core.models import Alert, Event
from service.core.replay import Replayer
from service.settings import DetectionSettings

T0 = 1_767_571_200_000  # 2026-01-05T00:00:00Z
FIXED_NOW = T0 + 30 * 86_400_000
_ids = itertools.count()

FRESH = {
    "created_at": T0 - 3 * 86_400_000,
    "followers_count": 2,
    "following_count": 1800,
    "posts_count": 0,
}
ESTABLISHED = {
    "created_at": T0 - 900 * 86_400_000,
    "followers_count": 400,
    "following_count": 350,
    "posts_count": 1200,
}


def ev(
    kind: str,
    actor: str,
    target: str | None = None,
    minute: float = 0.0,
    *,
    text: str | None = None,
    snapshot: dict[str, Any] | None = None,
    event_id: str | None = None,
) -> Event:
    """An event `minute` minutes after T0."""
    fields: dict[str, Any] = {
        "event_id": event_id or f"t{next(_ids)}",
        "type": kind,
        "actor_id": actor,
        "occurred_at": T0 + int(minute * 60_000),
    }
    if target is not None:
        fields["target_id"] = target
    if text is not None:
        fields["text"] = text
    if snapshot is not None:
        fields["actor"] = snapshot
    return Event.model_validate(fields)


def replay(events: Iterable[Event], settings: DetectionSettings | None = None) -> list[Alert]:
    replayer = Replayer(settings or DetectionSettings(), lambda: FIXED_NOW)
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return alerts


def summary(alerts: Iterable[Alert]) -> list[tuple[str, str, str]]:
    """(rule, subject, severity) in emission order: what case tables compare."""
    return [(a.rule, a.subject_id, a.severity.value) for a in alerts]
