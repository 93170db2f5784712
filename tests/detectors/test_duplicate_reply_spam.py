from __future__ import annotations

import pytest

from service.detectors.duplicate_reply_spam import normalize_text
from tests.events import ev, replay, summary

PITCH = "Earn 500$ a day from home, DM me for the secret"
RULE = "duplicate_reply_spam"


def pitch_to(targets: int, every_minutes: float, text: str = PITCH, start: float = 0.0) -> list:
    return [
        ev("reply", "spammer", f"victim{i}", start + i * every_minutes, text=text)
        for i in range(targets)
    ]


CASES = [
    # minute: 0 8 16 24 32       five targets inside one hour -> alert
    ("five_targets_in_40_min", pitch_to(5, 8), [(RULE, "spammer", "medium")]),
    ("four_targets", pitch_to(4, 8), []),
    # minute: 0  25  50  75  100  any 1 h window holds at most 3 of them
    ("five_targets_spread_over_100_min", pitch_to(5, 25), []),
    (
        "same_target_five_times",
        [ev("reply", "spammer", "victim", i, text=PITCH) for i in range(5)],
        [],
    ),
    ("short_courtesy_to_many", pitch_to(8, 1, text="thanks!!"), []),
    (
        "variations_of_case_space_url_mention",
        [
            ev(
                "mention",
                "spammer",
                f"v{i}",
                i,
                text=f"@v{i}  earn 500$ A DAY from home,   dm me for the SECRET https://x.co/{i}",
            )
            for i in range(5)
        ]
        + [ev("reply", "spammer", "v9", 6, text=f"{PITCH} www.spam.example/a?b=9")],
        [(RULE, "spammer", "medium")],
    ),
    (
        "escalates_once_at_high_bar",
        pitch_to(25, 1),
        [(RULE, "spammer", "medium"), (RULE, "spammer", "high")],
    ),
    (
        "two_texts_three_targets_each",
        pitch_to(3, 1) + pitch_to(3, 1, text="Another pitch entirely, click the link", start=5),
        [],
    ),
    (
        "self_thread_is_not_spam",
        [ev("reply", "spammer", "spammer", i, text=PITCH) for i in range(6)],
        [],
    ),
    # minute: 0..4 (5 targets) ...quiet 3 h... 200..204 (5 targets): two episodes
    (
        "new_episode_after_quiet_gap",
        pitch_to(5, 1) + pitch_to(5, 1, start=200),
        [(RULE, "spammer", "medium"), (RULE, "spammer", "medium")],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [(e, x) for _, e, x in CASES], ids=[name for name, _, _ in CASES]
)
def test_duplicate_reply_spam(events: list, expected: list) -> None:
    assert summary(a for a in replay(events) if a.rule == RULE) == expected


def test_evidence_names_text_targets_and_events() -> None:
    alerts = replay(pitch_to(5, 8))
    (alert,) = alerts
    assert alert.evidence["count"] == 5
    assert alert.evidence["text_sample"] == PITCH
    assert alert.related_ids == [f"victim{i}" for i in range(5)]
    assert len(alert.evidence["sample_event_ids"]) == 5
    assert alert.window_start == "2026-01-05T00:00:00.000Z"
    assert alert.window_end == "2026-01-05T00:32:00.000Z"


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("  Hello   WORLD ", "hello world"),
        ("@bob @carol look https://t.co/xyz now", "look <url> now"),
        ("email a@b.c stays", "email a@b.c stays"),
    ],
)
def test_normalize_text(raw: str, normalized: str) -> None:
    assert normalize_text(raw) == normalized
