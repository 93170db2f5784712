"""The Grafana dashboard's panels and queries, with Grafana's variables filled in so that a
plain Prometheus can run them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.exported import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "reciprocity.json"


@dataclass(frozen=True)
class Query:
    panel: str
    ref_id: str
    expr: str

    def for_prometheus(self, job: str, rate_interval: str) -> str:
        """As Grafana sends it: `$job` chosen, `$__rate_interval` computed (at least four
        scrape intervals)."""
        return self.expr.replace("$__rate_interval", rate_interval).replace("$job", job)


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text())
    return dashboard


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data: rows are containers (a collapsed one holds its panels)."""
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]
