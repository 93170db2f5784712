"""deploy/grafana: every panel queries the provisioned Prometheus with valid PromQL over metrics
the workers export. (tests/worker/test_end_to_end.py runs each query on a real worker's data.)"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import dashboard
from tests.deploy.exported import DEPLOY, exported_metric_names, referenced_metric_names

PROVISIONING = DEPLOY / "compose" / "grafana" / "provisioning"
DATASOURCE_VARIABLE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard.load()


def provisioned_datasource() -> dict[str, Any]:
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    (datasource,) = config["datasources"]
    assert isinstance(datasource, dict)
    return datasource


def variable(board: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in board["templating"]["list"] if v["name"] == name]
    assert isinstance(found, dict)
    return found


def test_the_dashboard_shows_what_the_issue_asks_for(board: dict[str, Any]) -> None:
    titles = {panel["title"] for panel in dashboard.panels(board)}
    assert {
        "Events/s by type",
        "Alerts/min by rule and severity",
        "Dead letters/min by code",
        "Consumer lag by stage",
        "Stage latency per message",
    } <= titles


def test_every_panel_queries_the_dashboard_datasource(board: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard.panels(board):
        assert panel["datasource"] == DATASOURCE_VARIABLE, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE_VARIABLE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_datasource_defaults_to_the_provisioned_prometheus(board: dict[str, Any]) -> None:
    datasource = provisioned_datasource()
    assert datasource["type"] == "prometheus"
    selector = variable(board, "datasource")
    assert selector["type"] == "datasource" and selector["query"] == "prometheus"
    assert selector["current"]["value"] == datasource["uid"]
    # Grafana's $__rate_interval is four of these: it must be the real scrape interval.
    compose_prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert datasource["jsonData"]["timeInterval"] == compose_prometheus["global"]["scrape_interval"]


def test_the_job_variable_defaults_to_the_job_of_the_rules(board: dict[str, Any]) -> None:
    job = variable(board, "job")
    assert job["current"]["value"] == "reciprocity"
    assert referenced_metric_names(job["definition"]) <= exported_metric_names()
    for query in dashboard.queries(board):
        # Every selector of our metrics is restricted to the chosen job.
        for name in referenced_metric_names(query.expr):
            assert f'{name}{{job="$job"' in query.expr, (query.panel, name)


def test_queries_use_only_metrics_the_workers_export(board: dict[str, Any]) -> None:
    exported = exported_metric_names()
    for query in dashboard.queries(board):
        used = referenced_metric_names(query.expr)
        assert used or 'up{job="$job"}' in query.expr, query.panel
        assert used <= exported, (query.panel, used - exported)


def test_queries_are_valid_promql(board: dict[str, Any], promtool: str, tmp_path: Path) -> None:
    # promtool parses rule expressions offline: one recording rule per panel query.
    rules = [
        {"record": f"dashboard:query_{n}", "expr": query.for_prometheus("reciprocity", "1m")}
        for n, query in enumerate(dashboard.queries(board))
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_provider_is_provisioned() -> None:
    config = yaml.safe_load((PROVISIONING / "dashboards" / "reciprocity.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    # compose.yaml mounts deploy/grafana there (tests/deploy/test_compose.py checks the mount).
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/reciprocity"
