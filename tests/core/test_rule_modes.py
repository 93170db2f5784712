"""A rule's mode (RECIPROCITY_DETECTION__<RULE>__MODE) decides where its alerts go, never what
they are or what any rule's state becomes:

    enforce  its alerts as always (the default)
    shadow   the same alerts, same ids and evidence, as `ShadowAlert`s: never among the
             enforced ones, episodes gated alike
    off      none of its alerts; every other rule's alerts and every account's state (but the
             rule's own episodes, which an off rule never opens) as with the rule enforced
"""

from __future__ import annotations

from functools import cache
from typing import Any, get_args

import orjson
import pytest

from service.core.decoding import EventDecoder, Rejection
from service.core.models import Alert, Event, Rule, ShadowAlert
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.settings import DetectionSettings, RuleMode, Settings
from tests.core.test_alert_payloads import GOLDEN, scenario
from tests.events import FIXED_NOW

RULES: tuple[str, ...] = get_args(Rule)
MODES: tuple[RuleMode, ...] = get_args(RuleMode)


@cache
def events() -> tuple[Event, ...]:
    """Small generated traffic with every scenario (2,278 events, alerts of every rule)."""
    decoder = EventDecoder(Settings().input, lambda: 2**62)
    decoded = []
    for event in generate_traffic(3, users=500, organic_events=1500).events:
        item = decoder.decode(orjson.dumps(event))
        assert not isinstance(item, Rejection)
        decoded.append(item)
    return tuple(decoded)


def with_mode(rule: str, mode: RuleMode) -> DetectionSettings:
    return DetectionSettings.model_validate({rule: {"mode": mode}})


def run(settings: DetectionSettings, include_shadow: bool = True) -> tuple[list[Alert], Replayer]:
    replayer = Replayer(settings, lambda: FIXED_NOW, include_shadow=include_shadow)
    alerts: list[Alert] = []
    for event in events():
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return alerts, replayer


@cache
def enforced() -> tuple[tuple[Alert, ...], Replayer]:
    alerts, replayer = run(DetectionSettings())
    assert {a.rule for a in alerts} == set(RULES), "the traffic must raise every rule"
    return tuple(alerts), replayer


def payloads(alerts: list[Alert] | tuple[Alert, ...]) -> list[dict[str, Any]]:
    return [alert.model_dump(mode="json") for alert in alerts]


def state(replayer: Replayer, without_episodes_of: str | None = None) -> dict[str, Any]:
    """Every account's serialized state (what the changelogs would hold)."""
    tables = replayer.tables
    value: dict[str, Any] = {
        "actors": {key: s.to_value() for key, s in tables.actors.items()},
        "targets": {key: s.to_value() for key, s in tables.targets.items()},
        "relations": dict(tables.relations),
    }
    if without_episodes_of is not None:
        for table in ("actors", "targets"):
            for account in value[table].values():
                account["ep"] = {r: e for r, e in account["ep"].items() if r != without_episodes_of}
    return value


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("rule", RULES)
def test_a_rules_mode_decides_only_where_its_alerts_go(rule: str, mode: RuleMode) -> None:
    baseline, baseline_replayer = enforced()
    alerts, replayer = run(with_mode(rule, mode))
    mine = [a for a in baseline if a.rule == rule]
    others = [a for a in baseline if a.rule != rule]
    assert mine and others
    enforced_now = [a for a in alerts if not isinstance(a, ShadowAlert)]
    shadow_now = [a for a in alerts if isinstance(a, ShadowAlert)]
    assert payloads([a for a in enforced_now if a.rule != rule]) == payloads(others)
    if mode == "enforce":
        assert payloads(alerts) == payloads(baseline)
        assert replayer.stats.suppressed == baseline_replayer.stats.suppressed
    elif mode == "shadow":
        assert [a for a in enforced_now if a.rule == rule] == []
        assert {a.rule for a in shadow_now} == {rule}
        # The very alerts enforcing would send, id, version and evidence included, plus mode.
        assert payloads(shadow_now) == [{**p, "mode": "shadow"} for p in payloads(mine)]
        assert replayer.stats.shadow_alerts == _counts(mine)
        assert not any(counted == rule for counted, _ in replayer.stats.alerts)
        # Repeat triggers absorbed by open episodes: as many as when enforced.
        assert replayer.stats.suppressed == baseline_replayer.stats.suppressed
    else:
        assert [a for a in alerts if a.rule == rule] == []
        assert replayer.stats.shadow_alerts == {}
    if mode == "off":
        # The detector still ran: its state, and everything else, as when enforced.
        assert state(replayer, without_episodes_of=rule) == state(
            baseline_replayer, without_episodes_of=rule
        )
        assert all(
            rule not in account.episodes
            for table in (replayer.tables.actors, replayer.tables.targets)
            for account in table.values()
        )
    else:
        assert state(replayer) == state(baseline_replayer)


def _counts(alerts: list[Alert]) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for alert in alerts:
        key = (alert.rule, alert.severity.value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_shadow_alerts_leave_the_replayer_only_when_asked_for() -> None:
    settings = with_mode("follower_spike", "shadow")
    without, replayer = run(settings, include_shadow=False)
    assert [a for a in without if a.rule == "follower_spike"] == []
    assert replayer.stats.shadow_alerts, "counted all the same"
    with_shadow, _ = run(settings, include_shadow=True)
    assert [a for a in with_shadow if not isinstance(a, ShadowAlert)] == without


@pytest.mark.parametrize("rule", RULES)
def test_a_shadow_payload_is_the_golden_payload_plus_its_mode(rule: str) -> None:
    """The golden scenarios (tests/core/golden/) with the rule in shadow mode: byte for byte
    the enforced payloads, and the `mode` key."""
    replayer = Replayer(with_mode(rule, "shadow"), lambda: FIXED_NOW, include_shadow=True)
    alerts: list[Alert] = []
    for event in scenario(rule):
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    shadow = [a for a in alerts if a.rule == rule]
    assert shadow and all(isinstance(a, ShadowAlert) for a in shadow)
    rendered = b"".join(
        orjson.dumps(
            {k: v for k, v in a.model_dump(mode="json").items() if k != "mode"},
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )
        + b"\n"
        for a in shadow
    )
    assert rendered == (GOLDEN / f"{rule}.json").read_bytes()
    assert {a.model_dump()["mode"] for a in shadow} == {"shadow"}
