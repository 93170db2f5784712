from __future__ import annotations

import pytest

from service.core.replay import Replayer
from service.detectors.duplicate_reply_spam import (
    normalize_text,
    shingle_sketch,
    similarity,
    text_words,
)
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


def variants_to(texts: list[str]) -> list:
    """One reply a minute, each to a new account, the i-th with the i-th text."""
    return [ev("reply", "spammer", f"victim{i}", i, text=text) for i, text in enumerate(texts)]


GROW = [  # one pitch: emoji, punctuation, numbers and one word vary
    "Grow your page fast!! 🔥 https://x.co/a1",
    "grow your page fast 💯 https://x.co/b2",
    "GROW your page FAST!!! 🚀 https://x.co/c3",
    "Grow your page fast, 100% real https://x.co/d4",
    "Grow your account fast!! 🔥 https://x.co/e5",
]
EARN = [  # one pitch: a word and a number change each time
    "Earn 500$ a day from home, DM me for the secret",
    "Make 700$ a day from home, DM me for the secret",
    "Earn 500$ a week from home, DM me for the secret",
    "Earn 900$ a day from home, message me for the secret",
    "Earn 500$ a day from home, DM me for the details",
]
DISGUISED = [  # one pitch behind full-width letters, zero-width spaces and accents
    "Grow your page fast https://x.co/1",
    "Ｇｒｏｗ your page fast https://x.co/2",
    "gr\u200bow your pa\u200bge fast https://x.co/3",
    "Gröw your pâge fast https://x.co/4",
    "grow your page fást https://x.co/5",
]
CONGRATS = [  # honest variety: five people, five messages with words in common
    "congrats on the new job, well deserved!",
    "congrats on your promotion!! so proud",
    "so happy for you, congrats on the wedding",
    "Congratulations on the baby news 💛",
    "what great news, congrats on the house",
]
THANKS = [
    "thanks so much for the follow, love your photos",
    "thank you for sharing this, it made my day",
    "thanks for the kind words about my talk",
    "really appreciate the shoutout, thank you",
    "thanks for coming to the meetup last night",
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
    # Near-duplicates are one text (the contract): minute 0 1 2 3 4, five wordings.
    (
        "one_pitch_varying_emoji_punctuation_number_word",
        variants_to(GROW),
        [(RULE, "spammer", "medium")],
    ),
    ("one_pitch_varying_a_word_and_a_number", variants_to(EARN), [(RULE, "spammer", "medium")]),
    ("one_pitch_disguised_with_unicode", variants_to(DISGUISED), [(RULE, "spammer", "medium")]),
    (
        "one_pitch_reordered",
        variants_to(["DM me for the secret, earn 500$ a day from home", *EARN[1:]]),
        [(RULE, "spammer", "medium")],
    ),
    ("honest_congratulations", variants_to(CONGRATS), []),
    ("honest_thanks", variants_to(THANKS), []),
    ("four_wordings_of_one_pitch_and_a_different_text", variants_to([*GROW[:4], CONGRATS[0]]), []),
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


def replay_with_texts_cut_to(events: list, kept: int) -> list:
    """Replay, storing the spammer's texts as an earlier version did (each entry's first
    `kept` elements) before the last event."""
    replayer = Replayer(DetectionSettings(), lambda: FIXED_NOW)
    alerts = []
    for event in events[:-1]:
        alerts += replayer.submit(event)
    state = replayer.tables.actors["spammer"]
    for entry in state.texts:
        del entry[kept:]
    replayer.tables.actors["spammer"] = state
    alerts += replayer.submit(events[-1])
    return alerts + replayer.flush()


def test_a_text_stored_before_sends_were_kept_counts_them_from_its_targets() -> None:
    # State written by the previous version: [hash, sample, targets], no send times.
    alerts = replay_with_texts_cut_to(pitch_to(5, 1), 3)
    assert summary(alerts) == [(RULE, "spammer", "medium")]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("Grow your page FAST!! 🔥 https://x.co/a", ["grow", "your", "page", "fast", "<url>"]),
        ("earn 500$ a day, 100%", ["earn", "a", "day"]),
        ("Ｇｒｏｗ gr\u200bow grów", ["grow", "grow", "grow"]),
        ("🔥🔥🔥 !!! 123", []),
    ],
)
def test_text_words_keep_letters_only(raw: str, words: list[str]) -> None:
    assert text_words(normalize_text(raw)) == words


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("grow your page fast", "grow your page fast", 1.0),
        # uni 3 of 5 shared, bigrams 1 of 5: 4 of 10
        ("grow your page fast", "grow your account fast", 0.4),
        ("buy cheap followers now", "the weather is lovely", 0.0),
    ],
)
def test_similarity_is_the_jaccard_of_word_shingles(a: str, b: str, expected: float) -> None:
    def sketch(text: str) -> list[int]:
        return shingle_sketch(text_words(text), 32)

    assert similarity(sketch(a), sketch(b), 32) == pytest.approx(expected)
    assert similarity(sketch(b), sketch(a), 32) == pytest.approx(expected)


def test_a_text_stored_before_sketches_were_kept_matches_its_variants() -> None:
    # State written by the previous version: [hash, sample, targets, sends], no sketch.
    alerts = replay_with_texts_cut_to(variants_to(EARN), 4)
    assert summary(alerts) == [(RULE, "spammer", "medium")]
