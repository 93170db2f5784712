from __future__ import annotations

import pytest

from service.core.replay import Replayer
from service.detectors.duplicate_reply_spam import normalize_text
from service.settings import DetectionSettings
from tests.events import FIXED_NOW, ev, replay, summary

PITCH = "Earn 500$ a day from home, DM me for the secret"
RULE = "duplicate_reply_spam"


def pitch_to(targets: int, every_minutes: float, text: str = PITCH, start: float = 0.0) -> list:
    return [
        ev("reply", "spammer", f"victim{i}", start + i * every_minutes, text=text)
        for i in range(targets)
    ]


def sends_of(sends: int, targets_each: int, every_minutes: float = 2.0) -> list:
    """`sends` posts of the pitch, each one message mentioning `targets_each` accounts: the
    events of one send share their `occurred_at` second."""
    return [
        ev("mention", "spammer", f"victim{n}-{k}", n * every_minutes, text=PITCH)
        for n in range(sends)
        for k in range(targets_each)
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
    # One send is one message (the contract): the events of one post share their second.
    ("one_post_mentioning_seven_friends", sends_of(1, 7), []),
    ("two_posts_mentioning_four_each", sends_of(2, 4), []),
    ("four_sends_to_twelve_targets", sends_of(4, 3), []),
    ("five_sends_of_two_mentions_each", sends_of(5, 2), [(RULE, "spammer", "medium")]),
    (
        "same_minute_different_seconds_are_separate_sends",
        [ev("reply", "spammer", f"v{i}", 1 + i / 60, text=PITCH) for i in range(5)],
        [(RULE, "spammer", "medium")],
    ),
    (
        "five_sends_of_four_mentions_reach_the_high_bar",
        sends_of(5, 4),
        [(RULE, "spammer", "medium"), (RULE, "spammer", "high")],
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


def test_a_text_stored_before_sends_were_kept_counts_them_from_its_targets() -> None:
    # State written by the previous version: [hash, sample, targets], no send times.
    replayer = Replayer(DetectionSettings(), lambda: FIXED_NOW)
    alerts = []
    events = pitch_to(5, 1)
    for event in events[:4]:
        alerts += replayer.submit(event)
    state = replayer.tables.actors["spammer"]
    for entry in state.texts:
        del entry[3:]
    replayer.tables.actors["spammer"] = state
    alerts += replayer.submit(events[4])
    alerts += replayer.flush()
    assert summary(alerts) == [(RULE, "spammer", "medium")]
