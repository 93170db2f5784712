"""duplicate_reply_spam: the same text sent as replies or mentions to many distinct accounts
within an hour, in many separate sends, is copy-paste spam. Subject: the actor.

The same text, or nearly: texts are compared by their words (letters only, so a varying emoji,
punctuation mark or number changes nothing), and a text whose word shingles overlap a stored
text's by `min_similarity` (Jaccard, from bottom-k MinHash sketches) is that text: a pitch with
one word changed is still the pitch. A stored text keeps the first wording seen.

One send is one message: the contract makes the events of one actor with the same normalized
text and the same `occurred_at` second one send, so a post mentioning seven friends is one
send to seven targets, not spam.

State per account: at most `texts_per_account` texts, each [hash, sample (≤ 280 chars),
targets (≤ the high bar), send seconds (≤ the high bar), sketch (≤ `sketch_size` 16-bit ints,
once it has been compared)]."""

from __future__ import annotations

import re
import unicodedata
from bisect import insort
from hashlib import blake2b
from itertools import pairwise, repeat
from operator import rshift
from typing import Any, Final
from zlib import crc32

from service.core.context import ActorContext, AlertIntent, Disorder
from service.core.models import EventType, Severity
from service.core.windows import BucketSpec
from service.settings import DetectionSettings

RULE: Final = "duplicate_reply_spam"
LOGIC_VERSION: Final = "1"
SETTINGS: Final = "duplicate_reply_spam"
SAMPLE_CHARS = 280

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")
_SPACE = re.compile(r"\s+")


def windows(settings: DetectionSettings, disorder: Disorder) -> dict[str, BucketSpec]:
    return {}  # its window is the texts' own lists of targets and sends


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


_WORD = re.compile(r"<url>|[^\W\d_]+")
_ASCII_WORD = re.compile(r"<url>|[a-z]+")  # the same on casefolded ASCII, faster
# Invisible characters that split a word without showing: soft hyphen, zero-width ones, BOM.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200d\u2060\ufeff]")
# Combining marks (accents once NFKD has split them off their letters).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


def text_words(normalized: str) -> list[str]:
    """The words of a normalized text, letters only: emoji, punctuation and digits are what a
    copy-paste varies. Compatibility forms (full-width letters) and accents are folded."""
    if normalized.isascii():
        return _ASCII_WORD.findall(normalized)
    normalized = _INVISIBLE.sub("", normalized)
    # Most non-ASCII is emoji, which NFKD leaves as it is: checking is cheaper than folding.
    if not unicodedata.is_normalized("NFKD", normalized):
        folded = unicodedata.normalize("NFKD", normalized)
        normalized = _COMBINING.sub("", folded).casefold()
    return _WORD.findall(normalized)


def text_hash(normalized: str) -> int:
    return int.from_bytes(blake2b(normalized.encode(), digest_size=8).digest(), "little") >> 1


def shingle_sketch(words: list[str], size: int) -> list[int]:
    """A bottom-k MinHash sketch of the text's word shingles (each word and each pair of
    neighbouring words, hashed to 16 bits): the `size` smallest hashes, ascending. A text of
    up to size/2 words keeps all its shingles, so its similarity is exact (but for a rare
    collision). 16 bits keep the stored sketch small; two texts of 20 shingles share a false
    one with a chance under 1 %."""
    # map() all the way: no Python-level step per shingle.
    shingles = set(map(crc32, map(str.encode, words)))
    shingles.update(map(crc32, map(str.encode, map(" ".join, pairwise(words)))))
    return sorted(set(map(rshift, shingles, repeat(16))))[:size]


def similarity(a: list[int], b: list[int], size: int) -> float:
    """The Jaccard similarity of two texts' shingles, estimated from their sketches (exact when
    neither was cut to `size`)."""
    return _similarity(set(a), a, b, size)


def _similarity(a_set: set[int], a: list[int], b: list[int], size: int) -> float:
    shared = len(a_set.intersection(b))
    if not shared:
        return 0.0
    if len(a) < size and len(b) < size:  # whole shingle sets
        return shared / (len(a) + len(b) - shared)
    # Bottom-k: of the `size` smallest hashes of the union, the share that both texts hold.
    union = sorted(a_set.union(b))[:size]
    both = a_set.intersection(b)
    return sum(1 for h in union if h in both) / len(union)


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
    words = text_words(normalized)
    h = text_hash(" ".join(words) if words else normalized)
    texts = ctx.state.texts
    oldest = at - window_ms
    entry = _find(texts, h)
    if entry is None:
        # Only a text used within the window can gain from a match: an older one's targets
        # and sends have all expired. Most texts of most accounts are older, so most new
        # texts are compared with nothing, and their sketch waits until one is.
        recent = [e for e in texts if _latest_use(e) > oldest]
        sketch = shingle_sketch(words, settings.sketch_size) if recent else None
        if sketch is not None:
            entry = _most_similar(recent, sketch, settings.min_similarity, settings.sketch_size)
        if entry is None:
            if len(texts) >= settings.texts_per_account:
                # Forget the text whose latest use is oldest: it is the least likely to grow.
                texts.remove(min(texts, key=_latest_use))
            entry = [h, event.text[:SAMPLE_CHARS], [], []]
            if sketch is not None:
                entry.append(sketch)
            texts.append(entry)
    targets: list[list[Any]] = entry[2]
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
                    "min_similarity": settings.min_similarity,
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


def _most_similar(
    texts: list[list[Any]], sketch: list[int], bar: float, size: int
) -> list[Any] | None:
    best, best_similarity = None, bar
    mine = set(sketch)
    mine_whole = len(sketch) < size
    for entry in texts:
        theirs = entry[4] if len(entry) > 4 else _sketch(entry, size)
        shared = len(mine.intersection(theirs))
        # Jaccard is at most shared / the larger set: most texts stop here, unweighed.
        if shared < bar * max(len(sketch), len(theirs)):
            continue
        if mine_whole and len(theirs) < size:  # whole shingle sets: exact, inline
            alike = shared / (len(sketch) + len(theirs) - shared)
        else:
            alike = _similarity(mine, sketch, theirs, size)
        if alike >= best_similarity:
            best, best_similarity = entry, alike
    return best


def _sketch(entry: list[Any], size: int) -> list[int]:
    """The stored text's sketch, made from its sample the first time it is needed (also for
    texts stored before sketches were kept)."""
    _sends(entry)
    if len(entry) < 5:
        entry.append(shingle_sketch(text_words(normalize_text(entry[1])), size))
    sketch: list[int] = entry[4]
    return sketch


def _sends(entry: list[Any]) -> list[int]:
    """The text's sends in the window, as distinct `occurred_at` seconds, oldest first. A text
    stored before sends were kept has them rebuilt from its targets' times."""
    if len(entry) < 4:
        entry.append(sorted({t[1] // 1000 for t in entry[2]}))
    sends: list[int] = entry[3]
    return sends


def _latest_use(entry: list[Any]) -> int:
    # Targets are appended as events come, so the last is the latest but for a late event.
    targets = entry[2]
    return int(targets[-1][1]) if targets else -1


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
