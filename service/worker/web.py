"""The worker's web views on Faust's web server: metrics, health, readiness, per-account
profiles."""

from __future__ import annotations

import asyncio
import functools
import hmac
import re
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from service.core.reciprocity import profile
from service.runtime.metrics import MetricsPage, ScrapeTurns
from service.runtime.topology import Topology

_ACCOUNT_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")


def valid_account_id(user_id: str) -> bool:
    """The contract's account ids: 1-128 characters, no whitespace or control characters."""
    return _ACCOUNT_ID.fullmatch(user_id) is not None


def authorized(header: str | None, token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def add_views(
    app: Any,
    topology: Topology,
    actors_table: Any,
    metrics: MetricsPage,
    turns: ScrapeTurns,
    api_token: str | None = None,
) -> None:
    @app.page("/metrics")  # type: ignore[untyped-decorator]
    async def metrics_page(web: View, request: Request) -> Response:
        wait = turns.wait_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        return web.bytes(metrics.body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/healthz")  # type: ignore[untyped-decorator]
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")  # type: ignore[untyped-decorator]
    async def readyz(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()
        body = {"ready": recovered and not app.rebalancing, "recovered": recovered}
        return web.json(body, status=200 if body["ready"] else 503)

    def guarded(view: Any) -> Any:
        """Refuse bad ids (400) and, with a token set, missing or wrong ones (401), before the
        request is routed to the account's owner (which checks again: headers go along)."""

        @functools.wraps(view)
        async def checked(web: View, request: Request, user_id: str) -> Response:
            if not valid_account_id(user_id):
                return web.json({"error": "not an account id"}, status=400)
            if not authorized(request.headers.get("Authorization"), api_token):
                return web.json(
                    {"error": "missing or wrong bearer token"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            response: Response = await view(web, request, user_id)
            return response

        return checked

    @app.page("/users/{user_id}/reciprocity")  # type: ignore[untyped-decorator]
    @guarded
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
