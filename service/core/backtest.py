"""Backtesting a settings change: one input through two pipelines, old settings and new, in
one pass, and per rule the alerts only one of them raises (`replay --compare-settings`).

Which alerts are "the same" under two settings: an alert id is derived from rule, subject,
severity and the start of the episode (`pipeline.alert_id`), not from the rule version, so an
alert a change leaves alone keeps its id. A threshold change can still move when an episode
starts (a lower bar is crossed sooner) and with it the id, though the finding is the same: this
rule, about this account, at this severity. So, within each (rule, subject, severity):

1. alerts with equal ids are the same alert;
2. the others are paired one to one, each old alert with the unpaired new one nearest in event
   time (`window_end`): the same finding, raised at another time ("moved");
3. what is left was raised by one side only.

Shadow alerts take part like enforced ones (a mode says where an alert goes, not whether the
rule found something); an off rule raises nothing, so turning a rule off shows its alerts as
raised by the old side only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import get_args

from service.core.models import BREAKER_RULE, Alert, AlertRule, Event, parse_timestamp_ms
from service.core.replay import Replayer
from service.settings import DetectionSettings

MatchKey = tuple[str, str, str]  # rule, subject_id, severity


def match_key(alert: Alert) -> MatchKey:
    return alert.rule, alert.subject_id, alert.severity.value


@dataclass
class RuleComparison:
    """One rule's alerts under the old and the new settings."""

    rule: str
    old: int = 0
    new: int = 0
    same: int = 0  # equal alert ids
    moved: int = 0  # the same (subject, severity), raised at another time
    only_new: list[Alert] = field(default_factory=list)
    only_old: list[Alert] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.only_new or self.only_old or self.moved)


def compare_alerts(old: Iterable[Alert], new: Iterable[Alert]) -> list[RuleComparison]:
    """Per rule (in the order of `models.AlertRule`; the breaker's trips last, if any), what
    the two alert sets share and what only one of them has; see the module docstring for what
    counts as the same alert."""
    comparisons = {rule: RuleComparison(rule) for rule in get_args(AlertRule)}
    old_groups = _grouped(old)
    new_groups = _grouped(new)
    for key in sorted(old_groups.keys() | new_groups.keys()):
        olds, news = old_groups.get(key, []), new_groups.get(key, [])
        comparison = comparisons[key[0]]
        comparison.old += len(olds)
        comparison.new += len(news)
        same, moved, only_old, only_new = _match(olds, news)
        comparison.same += same
        comparison.moved += moved
        comparison.only_old.extend(only_old)
        comparison.only_new.extend(only_new)
    for comparison in comparisons.values():
        comparison.only_new.sort(key=_in_time)
        comparison.only_old.sort(key=_in_time)
    # The breaker is no rule of its own: it shows only where a quota tripped it.
    return [c for c in comparisons.values() if c.rule != BREAKER_RULE or c.old or c.new]


def _grouped(alerts: Iterable[Alert]) -> dict[MatchKey, list[Alert]]:
    groups: dict[MatchKey, list[Alert]] = defaultdict(list)
    for alert in alerts:
        groups[match_key(alert)].append(alert)
    return groups


def _in_time(alert: Alert) -> tuple[int, str, str]:
    return parse_timestamp_ms(alert.window_end), alert.subject_id, alert.alert_id


def _match(
    olds: Sequence[Alert], news: Sequence[Alert]
) -> tuple[int, int, list[Alert], list[Alert]]:
    """(same, moved, only old, only new) within one (rule, subject, severity)."""
    new_by_id: dict[str, list[Alert]] = defaultdict(list)
    for alert in news:
        new_by_id[alert.alert_id].append(alert)
    same = 0
    unmatched_old: list[Alert] = []
    for alert in olds:
        twins = new_by_id.get(alert.alert_id)
        if twins:
            twins.pop()
            same += 1
        else:
            unmatched_old.append(alert)
    unmatched_new = sorted((a for twins in new_by_id.values() for a in twins), key=_in_time)
    moved = 0
    only_old: list[Alert] = []
    for alert in sorted(unmatched_old, key=_in_time):
        if not unmatched_new:
            only_old.append(alert)
            continue
        at = _in_time(alert)[0]
        nearest = min(
            range(len(unmatched_new)), key=lambda i: abs(_in_time(unmatched_new[i])[0] - at)
        )
        del unmatched_new[nearest]
        moved += 1
    return same, moved, only_old, unmatched_new


class SettingsComparison:
    """Two replayers, old settings and new, fed the same events: a line is read and decoded
    once (twice only where the two configurations decode differently) and each event goes to
    both. Both keep every alert, shadow ones included."""

    def __init__(
        self, old: DetectionSettings, new: DetectionSettings, clock_ms: Callable[[], int]
    ) -> None:
        self.old = Replayer(old, clock_ms, include_shadow=True)
        self.new = Replayer(new, clock_ms, include_shadow=True)
        self.old_alerts: list[Alert] = []
        self.new_alerts: list[Alert] = []

    def submit(self, old_event: Event | None, new_event: Event | None) -> None:
        """One input line as each side decoded it (None: that side rejected it)."""
        if old_event is not None:
            self.old_alerts.extend(self.old.submit(old_event))
        if new_event is not None:
            self.new_alerts.extend(self.new.submit(new_event))

    def finish(self) -> list[RuleComparison]:
        self.old_alerts.extend(self.old.flush())
        self.new_alerts.extend(self.new.flush())
        return compare_alerts(self.old_alerts, self.new_alerts)
