"""Backtesting a settings change: which alerts count as the same under two settings, and one
pass through two pipelines gives what two separate replays give."""

from __future__ import annotations

from collections import Counter

import pytest

from service.core.backtest import SettingsComparison, compare_alerts, match_key
from service.core.models import Alert, Severity, ShadowAlert, format_timestamp
from service.settings import DetectionSettings
from tests.core.test_rule_modes import events, run
from tests.events import FIXED_NOW, T0

MINUTE = 60_000


def alert(
    subject: str,
    minute: int,
    *,
    severity: str = "low",
    episode: int | None = None,
    rule: str = "follower_spike",
    shadow: bool = False,
) -> Alert:
    """An alert whose id, as the pipeline's, names rule, subject, severity and episode start
    (the minute its episode started; by default, its own)."""
    episode = minute if episode is None else episode
    fields = {
        "alert_id": f"{rule}/{subject}/{severity}/{episode}",
        "rule": rule,
        "rule_version": "1.test",
        "severity": Severity(severity),
        "subject_id": subject,
        "related_ids": [],
        "window_start": format_timestamp(T0 + (minute - 10) * MINUTE),
        "window_end": format_timestamp(T0 + minute * MINUTE),
        "detected_at": format_timestamp(FIXED_NOW),
        "evidence": {},
        "summary": "",
    }
    return ShadowAlert(**fields, mode="shadow") if shadow else Alert(**fields)


A1, A1_LATER = alert("a", 10), alert("a", 40, episode=10)  # one episode: same id
A1_SOONER = alert("a", 5)  # a lower bar: the episode starts sooner
A_HIGH = alert("a", 12, severity="high", episode=10)
B1, B2 = alert("b", 100), alert("b", 300)
CASES = [
    # (case, old, new, same, moved, only old, only new)
    ("nothing changed", [A1, B1], [A1, B1], 2, 0, [], []),
    ("a new subject", [A1], [A1, B1], 1, 0, [], [B1]),
    ("a subject no longer raised", [A1, B1], [A1], 1, 0, [B1], []),
    ("the same finding, raised sooner", [A1], [A1_SOONER], 0, 1, [], []),
    ("equal ids match before time does", [A1], [A1_SOONER, A1_LATER], 1, 0, [], [A1_SOONER]),
    ("an escalation only the new settings reach", [A1], [A1, A_HIGH], 1, 0, [], [A_HIGH]),
    ("a severity is not a time shift", [A_HIGH], [A1], 0, 0, [A_HIGH], [A1]),
    (
        "an episode more: the nearest in time is the twin",
        [B2],
        [B1, alert("b", 290)],
        0,
        1,
        [],
        [B1],
    ),
    ("a rule in shadow mode raising the same", [A1], [alert("a", 10, shadow=True)], 1, 0, [], []),
]


@pytest.mark.parametrize(
    ("old", "new", "same", "moved", "only_old", "only_new"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_alerts_are_matched_by_id_then_by_rule_subject_and_severity_nearest_in_time(
    old: list[Alert],
    new: list[Alert],
    same: int,
    moved: int,
    only_old: list[Alert],
    only_new: list[Alert],
) -> None:
    (spike,) = [c for c in compare_alerts(old, new) if c.rule == "follower_spike"]
    assert (spike.old, spike.new, spike.same, spike.moved) == (len(old), len(new), same, moved)
    assert spike.only_old == only_old
    assert spike.only_new == only_new


def test_every_rule_is_reported_even_without_alerts() -> None:
    rules = [c.rule for c in compare_alerts([], [])]
    assert rules == [
        "unsolicited_retweet_request",
        "follower_spike",
        "follow_churn",
        "duplicate_reply_spam",
    ]


# Lower bars that generated traffic crosses more often: churners with fewer pairs, and
# requests to fewer strangers as a campaign.
LOWER = DetectionSettings.model_validate(
    {
        "follow_churn": {"min_churned_pairs": 5},
        "unsolicited_retweet_request": {"medium_distinct_strangers": 1},
    }
)


def test_one_pass_through_both_settings_gives_what_two_replays_give() -> None:
    old, new = DetectionSettings(), LOWER
    comparison = SettingsComparison(old, new, lambda: FIXED_NOW)
    for event in events():
        comparison.submit(event, event)
    rules = comparison.finish()
    separately = {"old": run(old)[0], "new": run(new)[0]}
    assert [a.model_dump() for a in comparison.old_alerts] == [
        a.model_dump() for a in separately["old"]
    ]
    assert [a.model_dump() for a in comparison.new_alerts] == [
        a.model_dump() for a in separately["new"]
    ]
    # Only new / only old: per (rule, subject, severity), what one side raised more often.
    old_counts = Counter(map(match_key, separately["old"]))
    new_counts = Counter(map(match_key, separately["new"]))
    only_new = Counter(map(match_key, (a for c in rules for a in c.only_new)))
    only_old = Counter(map(match_key, (a for c in rules for a in c.only_old)))
    assert only_new == new_counts - old_counts
    assert only_old == old_counts - new_counts
    assert only_new, "the lower bars must add alerts"
    assert {c.rule for c in rules if c.only_new} == {"follow_churn", "unsolicited_retweet_request"}
    assert [c.rule for c in rules if c.changed] == [
        "unsolicited_retweet_request",
        "follow_churn",
    ]


def test_an_event_one_side_rejected_reaches_only_the_other() -> None:
    comparison = SettingsComparison(DetectionSettings(), DetectionSettings(), lambda: FIXED_NOW)
    first = events()[0]
    comparison.submit(first, None)
    comparison.finish()
    assert comparison.old.stats.outcomes["processed"] == 1
    assert comparison.new.stats.outcomes == Counter()
