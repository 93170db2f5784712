"""The detection file re-read while the pipeline runs: a valid file is the config of the next
event, and moves the rule_version of the rules it changed only; an invalid one changes nothing
and is counted; the poll sees a change of content, also through a swapped symlink."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.core.pipeline import Pipeline
from service.core.state import MemoryTables
from service.runtime.detection_reload import DetectionReload
from service.runtime.metrics import Metrics
from service.settings import DetectionFile, DetectionSettings
from tests.events import FIXED_NOW, ev

PITCH = "grab my crypto course today, link in bio"


class Running:
    """A pipeline built from a detection file, and its reload."""

    def __init__(self, path: Path, under: dict[str, object] | None = None) -> None:
        self.source = DetectionFile(path, under or {})
        self.pipeline = Pipeline(self.source.read().settings, MemoryTables.empty(), lambda: 0)
        self.registry = CollectorRegistry()
        self.reload = DetectionReload(self.source, self.pipeline, Metrics(self.registry))
        self.reload.started()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def versions(self) -> dict[str, str]:
        return dict(self.pipeline.config.rule_versions)


@pytest.fixture
def detection_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "detection.yaml"
    path.write_text("follow_churn:\n  min_churned_pairs: 40\n")
    return path


def test_a_valid_file_is_the_config_of_the_next_event(
    detection_yaml: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = Running(detection_yaml)
    sends = [ev("reply", "pitcher", f"t{n}", minute=n, text=PITCH) for n in range(3)]
    untouched = Pipeline(DetectionSettings(), MemoryTables.empty(), lambda: FIXED_NOW)
    for event in sends:  # the defaults want five targets: three sends raise nothing
        assert not untouched.actor_stage(event).alerts
    for event in sends[:2]:
        assert not running.pipeline.actor_stage(event).alerts
    before = running.versions()

    detection_yaml.write_text(
        "follow_churn:\n  min_churned_pairs: 40\n"
        "duplicate_reply_spam:\n  min_distinct_targets: 3\n  min_sends: 3\n",
    )
    with caplog.at_level(logging.INFO, "service.runtime.detection_reload"):
        assert running.reload.check()

    alerts = running.pipeline.actor_stage(sends[2]).alerts
    after = running.versions()
    assert [a.rule for a in alerts] == ["duplicate_reply_spam"]
    assert alerts[0].rule_version == after["duplicate_reply_spam"]
    assert after["duplicate_reply_spam"] != before["duplicate_reply_spam"]
    assert {rule: v for rule, v in after.items() if rule != "duplicate_reply_spam"} == {
        rule: v for rule, v in before.items() if rule != "duplicate_reply_spam"
    }
    assert running.metric("reciprocity_config_reloads_total") == 1
    assert running.metric("reciprocity_config_reload_failures_total") == 0
    (line,) = [r.getMessage() for r in caplog.records]
    old, new = before["duplicate_reply_spam"], after["duplicate_reply_spam"]
    assert line.endswith(f"reloaded (the file changed): duplicate_reply_spam {old} -> {new}")


def test_the_rule_info_metric_shows_the_active_version_and_mode_only(
    detection_yaml: Path,
) -> None:
    running = Running(detection_yaml)
    old = running.versions()["follow_churn"]
    labels = {"rule": "follow_churn", "rule_version": old, "mode": "enforce"}
    assert running.metric("reciprocity_rule_info", **labels) == 1

    detection_yaml.write_text("follow_churn:\n  min_churned_pairs: 41\n  mode: shadow\n")
    assert running.reload.reload("SIGHUP")
    new = running.versions()["follow_churn"]
    assert new != old
    assert running.metric("reciprocity_rule_info", **labels) is None  # the old series is gone
    assert (
        running.metric(
            "reciprocity_rule_info", rule="follow_churn", rule_version=new, mode="shadow"
        )
        == 1
    )
    series = [
        sample
        for metric in running.registry.collect()
        if metric.name == "reciprocity_rule_info"
        for sample in metric.samples
    ]
    assert sorted(sample.labels["rule"] for sample in series) == sorted(running.versions())


def test_a_mode_change_moves_no_version(detection_yaml: Path) -> None:
    running = Running(detection_yaml)
    before = running.versions()
    detection_yaml.write_text("follow_churn:\n  min_churned_pairs: 40\n  mode: 'off'\n")
    assert running.reload.check()
    assert running.versions() == before
    assert running.pipeline.config.modes["follow_churn"] == "off"
    assert (
        running.metric(
            "reciprocity_rule_info",
            rule="follow_churn",
            rule_version=before["follow_churn"],
            mode="off",
        )
        == 1
    )


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("follow_churn:\n  min_churned_pairs: 0\n", "follow_churn.min_churned_pairs"),
        ("follow_churn:\n  min_churned_pair: 5\n", "follow_churn.min_churned_pair"),
        ("follow_churn: [\n", "not valid YAML"),
        ("state:\n  allowed_lateness_seconds: 120\n", "state.allowed_lateness_seconds"),
        ("duplicate_reply_spam:\n  sketch_size: 32\n", "duplicate_reply_spam.sketch_size"),
        # Started without a quota: the first one needs the quota stage, built at the start.
        ("follow_churn:\n  quota_per_hour: 5\n", "follow_churn.quota_per_hour: takes effect"),
    ],
)
def test_an_invalid_file_keeps_the_running_settings_and_is_counted_once_per_content(
    detection_yaml: Path, content: str, says: str, caplog: pytest.LogCaptureFixture
) -> None:
    running = Running(detection_yaml)
    config = running.pipeline.config
    detection_yaml.write_text(content)
    with caplog.at_level(logging.ERROR, "service.runtime.detection_reload"):
        assert not running.reload.check()
        assert not running.reload.check()  # the same content again: already refused
    assert running.pipeline.config is config
    assert running.metric("reciprocity_config_reload_failures_total") == 1
    assert running.metric("reciprocity_config_reloads_total") == 0
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 1
    assert str(detection_yaml) in refusals[0] and says in refusals[0]
    assert "\n" not in refusals[0]

    assert not running.reload.reload("SIGHUP")  # asked for again: refused and counted again
    assert running.metric("reciprocity_config_reload_failures_total") == 2


def test_a_file_that_vanishes_is_refused_once_and_its_return_applied(
    detection_yaml: Path,
) -> None:
    running = Running(detection_yaml)
    detection_yaml.unlink()
    assert not running.reload.check()
    assert not running.reload.check()
    assert running.metric("reciprocity_config_reload_failures_total") == 1
    detection_yaml.write_text("follow_churn:\n  min_churned_pairs: 30\n")
    assert running.reload.check()
    assert running.pipeline.config.settings.follow_churn.min_churned_pairs == 30


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    # A ConfigMap volume: detection.yaml -> ..data/detection.yaml, ..data -> ..<timestamp>;
    # an update writes a new timestamped directory and renames a new ..data link over the old.
    def version(name: str, text: str) -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "detection.yaml").write_text(text)

    version("..v1", "follow_churn:\n  min_churned_pairs: 40\n")
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "detection.yaml").symlink_to("..data/detection.yaml")
    running = Running(tmp_path / "detection.yaml")
    assert not running.reload.check()  # nothing changed yet

    version("..v2", "follow_churn:\n  min_churned_pairs: 45\n")
    (tmp_path / "..data_tmp").symlink_to("..v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert running.reload.check()
    assert running.pipeline.config.settings.follow_churn.min_churned_pairs == 45


def test_a_field_removed_from_the_file_falls_back_to_its_variable(detection_yaml: Path) -> None:
    under = {"follow_churn": {"min_churned_pairs": 60, "high_multiplier": 3.0}}
    running = Running(detection_yaml, under)
    churn = running.pipeline.config.settings.follow_churn
    assert (churn.min_churned_pairs, churn.high_multiplier) == (40, 3.0)  # the file wins
    detection_yaml.write_text("duplicate_reply_spam:\n  min_sends: 6\n")
    assert running.reload.check()
    assert running.pipeline.config.settings.follow_churn.min_churned_pairs == 60


def test_shadowed_variables_are_logged_at_every_reload(
    detection_yaml: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "service.runtime.detection_reload"):
        running = Running(detection_yaml, {"follow_churn": {"min_churned_pairs": 60}})
        detection_yaml.write_text("follow_churn:\n  min_churned_pairs: 41\n")
        assert running.reload.check()
    variable = "RECIPROCITY_DETECTION__FOLLOW_CHURN__MIN_CHURNED_PAIRS"
    shadowed = [r for r in caplog.records if variable in r.getMessage()]
    assert len(shadowed) == 2  # at the start and at the reload


def test_quotas_change_live_once_a_rule_has_one(tmp_path: Path) -> None:
    path = tmp_path / "detection.yaml"
    path.write_text("follow_churn:\n  quota_per_hour: 5\n")
    running = Running(path)
    versions = running.versions()
    path.write_text("follow_churn:\n  quota_per_day: 20\nfollower_spike:\n  quota_per_hour: 2\n")
    assert running.reload.check()
    quotas = running.pipeline.config.quotas
    assert (quotas["follow_churn"], quotas["follower_spike"]) == ((None, 20), (2, None))
    assert running.versions() == versions  # a quota routes alerts, it does not change them
    path.write_text("{}\n")  # no quota left: applied too (the quota stage passes them on)
    assert running.reload.check()
    assert set(running.pipeline.config.quotas.values()) == {(None, None)}
