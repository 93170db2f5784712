"""duplicate_reply_spam: the same text sent as replies or mentions to many distinct accounts
within an hour, in many separate sends, is copy-paste spam. Subject: the actor.

One send is one message: the contract makes the events of one actor with the same normalized
text and the same `occurred_at` second one send, so a post mentioning seven friends is one
send to seven targets, not spam."""

from __future__ import annotations

import re
from bisect import insort
from hashlib import blake2b
from typing import Any, Final

from service.core.context import ActorContext, AlertIntent
from service.core.models import EventType, Severity

RULE: Final = "duplicate_reply_spam"
SAMPLE_CHARS = 280

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case, whitespace, URLs and @-mentions normalized: what a copy-paste keeps identical."""
    text = text.casefold()
    # Casefolded, a text can only match _URL at a literal "http" or "www." (no other character
    # matches h, t, p or w ignoring case) and _MENTION only at an "@": most texts skip both.
    if "http" in text or "www." in text:
        text = _URL.sub(" <url> ", text)
    if "@" in text:
        text = _MENTION.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def text_hash(normalized: str) -> int:
    return int.from_bytes(blake2b(normalized.encode(), digest_size=8).digest(), "little") >> 1


def detect(ctx: ActorContext) -> None:
    event = ctx.event
    if event.type is not EventType.REPLY and event.type is not EventType.MENTION:
        return
    if not event.text or event.target_id is None:
        return
    settings = ctx.config.settings.duplicate_reply_spam
    normalized = normalize_text(event.text)
    if len(normalized) < settings.min_text_chars:
        return
    at = event.occurred_at
    window_ms = settings.window_seconds * 1000
    target_cap = max(
        settings.min_distinct_targets, int(settings.min_distinct_targets * settings.high_multiplier)
    )
    h = text_hash(normalized)
    texts = ctx.state.texts
    entry = _find(texts, h)
    if entry is None:
        if len(texts) >= settings.texts_per_account:
            # Forget the text whose latest use is oldest: it is the least likely to grow.
            texts.remove(min(texts, key=_latest_use))
        entry = [h, event.text[:SAMPLE_CHARS], [], []]
        texts.append(entry)
    targets: list[list[Any]] = entry[2]
    oldest = at - window_ms
    targets[:] = [t for t in targets if t[1] > oldest and t[0] != event.target_id]
    targets.append([event.target_id, at, event.event_id])
    if len(targets) > target_cap:
        del targets[0]
    sends = _sends(entry)
    sends[:] = [second for second in sends if second * 1000 > oldest]
    second = at // 1000
    if second not in sends:
        insort(sends, second)
        # Past the cap more sends change nothing: the state stays bounded.
        if len(sends) > target_cap:
            del sends[0]
    distinct = len(targets)
    if distinct < settings.min_distinct_targets or len(sends) < settings.min_sends:
        return
    high_bar = settings.min_distinct_targets * settings.high_multiplier
    severity = Severity.HIGH if distinct >= high_bar else Severity.MEDIUM
    first = min(t[1] for t in targets)
    minutes = max(1, round((at - first) / 60_000))
    ctx.effects.alerts.append(
        AlertIntent(
            rule=RULE,
            subject_id=event.actor_id,
            severity=severity,
            at_ms=at,
            window_start_ms=first,
            window_end_ms=at,
            related_ids=[t[0] for t in targets],
            evidence={
                "text_sample": entry[1],
                "normalized_text": normalized[:SAMPLE_CHARS],
                "count": distinct,
                "sends": len(sends),
                "targets": [t[0] for t in targets],
                "thresholds": {
                    "min_distinct_targets": settings.min_distinct_targets,
                    "min_sends": settings.min_sends,
                    "window_seconds": settings.window_seconds,
                    "high_distinct_targets": high_bar,
                },
                "sample_event_ids": [t[2] for t in targets][-20:],
            },
            summary=(
                f"{event.actor_id} sent the same text to {distinct} different accounts in "
                f'{len(sends)} messages within {minutes} min: "{_short(entry[1])}"'
            ),
            episode_gap_ms=window_ms,
        )
    )


def _find(texts: list[list[Any]], h: int) -> list[Any] | None:
    for entry in texts:
        if entry[0] == h:
            return entry
    return None


def _sends(entry: list[Any]) -> list[int]:
    """The text's sends in the window, as distinct `occurred_at` seconds, oldest first. A text
    stored before sends were kept has them rebuilt from its targets' times."""
    if len(entry) < 4:
        entry.append(sorted({t[1] // 1000 for t in entry[2]}))
    sends: list[int] = entry[3]
    return sends


def _latest_use(entry: list[Any]) -> int:
    targets = entry[2]
    return max((t[1] for t in targets), default=-1)


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
