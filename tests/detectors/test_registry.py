"""The registry is the one place that lists the rules: every rule the alert model names is
registered once, with its settings section and a logic version, and what it declares is what
the pipeline's Config holds."""

from __future__ import annotations

from typing import get_args

from service.core.context import Config
from service.core.models import Rule
from service.detectors import RULES
from service.settings import DetectionSettings


def test_every_alert_rule_is_registered_once() -> None:
    names = [rule.RULE for rule in RULES]
    assert sorted(names) == sorted(get_args(Rule))


def test_each_rule_names_its_settings_and_windows() -> None:
    settings = DetectionSettings()
    config = Config(settings, RULES)
    for rule in RULES:
        assert rule.SETTINGS in DetectionSettings.model_fields
        assert config.rule_versions[rule.RULE].startswith(f"{rule.LOGIC_VERSION}.")
        for name in rule.windows(settings, config.disorder):
            assert name.startswith(f"{rule.RULE}.")
            assert name in config.windows


def test_a_threshold_change_moves_only_its_rule_version() -> None:
    before = Config(DetectionSettings(), RULES).rule_versions
    changed = DetectionSettings(follow_churn={"min_churned_pairs": 60})
    after = Config(changed, RULES).rule_versions
    assert {rule for rule in before if before[rule] != after[rule]} == {"follow_churn"}


def test_a_mode_change_moves_no_rule_version() -> None:
    # A shadow alert must carry the version its enforced twin would, and switching a rule
    # between modes is no change of logic or threshold.
    before = Config(DetectionSettings(), RULES)
    for mode in ("shadow", "off"):
        changed = DetectionSettings(follower_spike={"mode": mode}, follow_churn={"mode": mode})
        after = Config(changed, RULES)
        assert after.rule_versions == before.rule_versions
        assert after.modes == {**before.modes, "follower_spike": mode, "follow_churn": mode}


def test_a_window_setting_changes_how_long_buckets_are_kept_never_their_width() -> None:
    # The detection file changes settings under stored state (service/runtime/
    # detection_reload.py): rows bucketed under the old settings must read right under the
    # new, so a bucket's width and counters may not depend on a rule's settings.
    default = DetectionSettings()
    halved = DetectionSettings.model_validate(
        {
            rule.SETTINGS: {"window_seconds": getattr(default, rule.SETTINGS).window_seconds // 2}
            for rule in RULES
            if "window_seconds" in type(getattr(default, rule.SETTINGS)).model_fields
        }
    )
    before, after = Config(default, RULES), Config(halved, RULES)
    assert before.windows.keys() == after.windows.keys()
    assert any(spec.keep != after.windows[name].keep for name, spec in before.windows.items())
    for name, spec in before.windows.items():
        layout = after.windows[name]
        assert (spec.width_ms, spec.kinds) == (layout.width_ms, layout.kinds), name
