"""A local stand-in for Jetstream's `/subscribe`: plays fixture lines over a WebSocket, as text
frames, byte for byte (invalid UTF-8 included).

Like Jetstream it starts at the live tail without a cursor (here: the first line) and, given
`cursor=`, at the first line whose time_us is at or after it. The first connection can be
dropped mid-stream, as a network drops it: no close frame, the TCP connection aborted.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from service.devtools.local_kafka import free_port


def line_time_us(line: bytes) -> int | None:
    try:
        frame = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    value = frame.get("time_us") if isinstance(frame, dict) else None
    return value if type(value) is int else None


class JetstreamPlayer:
    def __init__(
        self,
        lines: list[bytes],
        drop_first_after: int | None = None,
        drop_when: Callable[[], bool] = lambda: True,
    ) -> None:
        """`drop_first_after`: lines the first connection gets before it is dropped, once
        `drop_when()` holds (say, once the bridge has read them)."""
        self.lines = lines
        self.drop_first_after = drop_first_after
        self.drop_when = drop_when
        self.queries: list[list[tuple[str, str]]] = []  # each connection's query, in order
        self.sent: list[list[int]] = []  # the lines each connection was sent
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/subscribe"

    async def start(self) -> JetstreamPlayer:
        app = web.Application()
        app.router.add_get("/subscribe", self._subscribe)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def first_line_at(self, cursor: int) -> int:
        for index, line in enumerate(self.lines):
            at = line_time_us(line)
            if at is not None and at >= cursor:
                return index
        return len(self.lines)

    async def _subscribe(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        number = len(self.queries)
        self.queries.append(list(request.query.items()))
        sent: list[int] = []
        self.sent.append(sent)
        cursor = request.query.get("cursor")
        start = self.first_line_at(int(cursor)) if cursor is not None else 0
        for index in range(start, len(self.lines)):
            if number == 0 and index == self.drop_first_after:
                await wait_until(self.drop_when)
                assert request.transport is not None
                request.transport.abort()
                return ws
            await ws.send_frame(self.lines[index], WSMsgType.TEXT)
            sent.append(index)
        async for _ in ws:  # until the client closes
            pass
        return ws


async def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached in {timeout:g} s: {condition}")
        await asyncio.sleep(0.05)


async def spawn_bridge(
    bootstrap: str, topic: str, url: str, cursor: Path, stderr: Any
) -> asyncio.subprocess.Process:
    """`reciprocity bridge jetstream` as a process, from `url` into `topic`, its metrics on a
    free local port."""
    env = {
        "PATH": "/usr/bin:/bin",
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RECIPROCITY_TOPICS__EVENTS": topic,
        "RECIPROCITY_BRIDGE__METRICS_BIND": "127.0.0.1",
        "RECIPROCITY_BRIDGE__METRICS_PORT": str(free_port()),
    }
    return await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "bridge", "jetstream"),
        *("--url", url, "--cursor-file", str(cursor)),
        env=env,
        stderr=stderr,
    )
