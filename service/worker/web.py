"""The worker's web views on Faust's web server: metrics, health, readiness, per-account
profiles."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from service.core.reciprocity import profile
from service.runtime.metrics import MetricsPage
from service.runtime.topology import Topology


def add_views(app: Any, topology: Topology, actors_table: Any, metrics: MetricsPage) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(web: View, request: Request) -> Response:
        return web.bytes(metrics.body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")  # type: ignore[untyped-decorator]
    async def readyz(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        body = {"ready": recovered and not app.rebalancing, "recovered": recovered}
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/users/{user_id}/reciprocity")  # type: ignore[untyped-decorator]
    @app.table_route(table=actors_table, match_info="user_id")  # type: ignore[untyped-decorator]
    async def reciprocity(web: View, request: Request, user_id: str) -> Response:
        actor = topology.tables.actors.get(user_id)
        target = topology.tables.targets.get(user_id)
        now_ms = max(
            topology.stage1.newest_event_ms,
            actor.watermark if actor is not None else -1,
            target.watermark if target is not None else -1,
        )
        return web.json(profile(topology.pipeline.config, user_id, actor, target, now_ms))
