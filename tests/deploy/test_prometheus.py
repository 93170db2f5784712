"""deploy/prometheus: the rules pass promtool, their unit tests pass, and they only use metrics
the workers export. (tests/worker/test_end_to_end.py evaluates them on a real worker.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.exported import (
    DEPLOY,
    PROMETHEUS_METRICS,
    exported_metric_names,
    referenced_metric_names,
)

RULES = DEPLOY / "prometheus" / "reciprocity.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "reciprocity.rules.test.yml"
JOB = "reciprocity"


def promtool_run(promtool: str, *args: str) -> str:
    result = subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_rules_pass_promtool_check(promtool: str) -> None:
    output = promtool_run(promtool, "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in output


def test_rules_pass_their_unit_tests(promtool: str) -> None:
    promtool_run(promtool, "test", "rules", str(RULE_TESTS))


def test_every_alert_has_a_unit_test_where_it_fires() -> None:
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert alerts == fired
    assert {
        "ReciprocityWorkerDown",
        "ReciprocityConsumerLagGrowing",
        "ReciprocityDeadLetterRate",
        "ReciprocityAlertStorm",
        "ReciprocityRuleBreakerOpen",
    } <= alerts


def test_rules_use_only_metrics_the_workers_export() -> None:
    exported = exported_metric_names()
    for rule in rules():
        used = referenced_metric_names(rule["expr"])
        assert used <= exported, (rule.get("record") or rule["alert"], used - exported)
    # Rule tests feed series by name too: a renamed metric must fail them, not pass vacuously.
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in test["input_series"]:
            name = series["series"].split("{", 1)[0]
            assert name in exported | PROMETHEUS_METRICS, name


def test_rules_read_only_our_job() -> None:
    # Other Faust apps in the same Prometheus export faust_* too.
    for rule in rules():
        for name in referenced_metric_names(rule["expr"]):
            assert f'{name}{{job="{JOB}"' in rule["expr"], (rule.get("record"), name)


def test_compose_prometheus_config_passes_promtool(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    # compose.yaml mounts the rules file where rule_files looks; point there from here.
    assert config["rule_files"] == ["/etc/prometheus/rules/*.rules.yml"]
    config["rule_files"] = [str(RULES)]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    output = promtool_run(promtool, "check", "config", str(local))
    assert f"SUCCESS: {len(rules())} rules found" in output
    assert config["scrape_configs"][0]["job_name"] == JOB
