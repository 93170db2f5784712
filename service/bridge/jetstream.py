"""`reciprocity bridge jetstream`: Bluesky's Jetstream to the events topic.

The I/O around `jetstream_mapping`: the WebSocket to Jetstream (aiohttp), the producer, the
cursor on disk and the metrics page. Frames are read in order; each one's events go to the
producer keyed by actor; the cursor moves over a frame once Kafka acknowledged its events and
all before them (`cursor.PendingFrames`), and is saved about once a second. A lost connection
is retried for ever with capped, jittered exponential backoff, resuming a few seconds before
the cursor. Once it runs, Kafka giving up on an event is the one thing that ends the bridge
(`BridgeFailure`): no reconnect fixes it, and the cursor must not pass the event.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CONTENT_TYPE_LATEST

from service.bridge.cursor import CursorFile, PendingFrames
from service.bridge.jetstream_mapping import (
    BINARY_FRAME,
    COLLECTIONS,
    FollowStore,
    FrameOutcome,
    read_frame,
)
from service.bridge.metrics import BridgeMetrics
from service.runtime.kafka_clients import (
    TOPIC_AUTHORIZATION_FAILED,
    OutputProducer,
    client_options,
    describe_failure,
    wait_for_brokers,
)
from service.settings import Settings

# The cursor is written at most this often: a restart re-sends at most this much more.
CURSOR_SAVE_SECONDS = 1.0
# A ping this often, answered or the connection counts as lost: a silent half-open TCP
# connection would otherwise wait for ever.
HEARTBEAT_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 30.0
# aiohttp refuses frames over this and ends the connection. Jetstream is asked (its
# maxMessageSizeBytes) for nothing over max_frame_bytes, and frames between the two are
# skipped and counted; this only bounds memory against a server that ignores the request (it
# would send the frame again after each reconnect).
HARD_FRAME_LIMIT_BYTES = 64 * 1024 * 1024
# On a stop, acknowledgements are awaited this long: within the 30 s grace period of compose
# and Kubernetes; what is not acknowledged by then is re-sent after the restart.
STOP_WAIT_SECONDS = 10.0
# A little batching: the three collections come at tens to hundreds of frames a second.
PRODUCER_LINGER_MS = 20
PRODUCER_BATCH_BYTES = 262_144
UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka's error code


class BridgeFailure(RuntimeError):
    """What no reconnect fixes (Kafka gave up on an event, the topic is missing, the metrics
    port is taken); the message is one line for an operator."""


class Backoff:
    """Pauses between reconnects: doubling from `low` up to `high`, each drawn between half
    and all of that (bridges restarted together do not reconnect in step)."""

    def __init__(self, low: float, high: float, draw: Callable[[], float] = random.random) -> None:
        self._low, self._high, self._draw = low, high, draw
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._high, self._low * 2.0 ** min(self._failures, 62))
        self._failures += 1
        return ceiling * (0.5 + 0.5 * self._draw())

    def reset(self) -> None:
        self._failures = 0


def subscribe_url(base: str, cursor: int | None, max_frame_bytes: int) -> str:
    """The URL to connect to: the configured one (its own query kept, e.g. wantedDids), asking
    for the mapped collections only and no frame over `max_frame_bytes`, from `cursor` if any
    (none: the live tail). Compression is never asked for: frames are plain JSON."""
    parts = urlsplit(base)
    ours = {"wantedCollections", "cursor", "maxMessageSizeBytes", "compress"}
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ours]
    query += [("wantedCollections", collection) for collection in COLLECTIONS]
    query.append(("maxMessageSizeBytes", str(max_frame_bytes)))
    if cursor is not None:
        query.append(("cursor", str(cursor)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class JetstreamBridge:
    def __init__(
        self,
        settings: Settings,
        *,
        from_now: bool = False,
        metrics: BridgeMetrics | None = None,
        log: Callable[[str], None] = _stderr,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._options = settings.bridge
        # With several events topics the worker reads them all; the bridge writes the first.
        self.topic = settings.topics.events[0]
        self._from_now = from_now
        self.metrics = metrics if metrics is not None else BridgeMetrics()
        self._log = log
        self._backoff = Backoff(
            self._options.reconnect_min_seconds, self._options.reconnect_max_seconds, draw
        )
        self._cursor_file = CursorFile(self._options.cursor_path)
        self._follows = FollowStore(self._options.follow_store_max)
        self._pending = PendingFrames()
        self._producer = OutputProducer(
            settings.kafka, linger_ms=PRODUCER_LINGER_MS, max_batch_bytes=PRODUCER_BATCH_BYTES
        )
        self._cursor: int | None = None  # acknowledged
        self._saved: int | None = None
        self._stopping = asyncio.Event()
        self._failure: BridgeFailure | None = None
        self._ws: aiohttp.ClientWebSocketResponse[Literal[False]] | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._streaming = False
        self._closing: asyncio.Task[bool] | None = None

    @property
    def streaming(self) -> bool:
        """Past the start: the producer is up and stop() saves a cursor."""
        return self._streaming

    @property
    def cursor(self) -> int | None:
        """time_us of the newest frame whose events (and all before) Kafka acknowledged."""
        return self._cursor

    def stop(self) -> None:
        """End the run: the frames read so far are acknowledged, the cursor saved."""
        self._stopping.set()
        if self._ws is not None and self._closing is None:
            # Ends the read loop, which is waiting for the next frame.
            self._closing = asyncio.get_running_loop().create_task(self._ws.close())

    async def run(self) -> None:
        """Until `stop()`; raises `BridgeFailure` (and `kafka_clients.BrokersUnreachable` at
        start) for what no retry fixes."""
        if not self._from_now:  # first: a bad file is found before Kafka is waited for
            self._cursor = await asyncio.to_thread(self._cursor_file.load)
            self._saved = self._cursor
        kafka = self._settings.kafka
        await wait_for_brokers(kafka, kafka.connect_timeout_seconds, self._log)
        await self._check_topic()
        if self._cursor is not None:
            self.metrics.set_cursor(self._cursor)
        await self._serve_metrics()
        try:
            await self._producer.start()
            self._streaming = True
            keeper = asyncio.create_task(self._keep_cursor())
            try:
                await self._stream()
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            if self._failure is not None:
                raise self._failure
            await self._settle(wait=STOP_WAIT_SECONDS)
            await self._save()
            self._log(
                f"stopped; cursor {self._cursor} saved in {self._cursor_file.path}"
                if self._cursor is not None
                else "stopped before Kafka acknowledged any frame; no cursor saved"
            )
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), STOP_WAIT_SECONDS)
            if self._metrics_runner is not None:
                await self._metrics_runner.cleanup()

    async def _check_topic(self) -> None:
        admin = AIOKafkaAdminClient(**client_options(self._settings.kafka))
        await admin.start()
        try:
            (described,) = await admin.describe_topics([self.topic])
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        code = described.get("error_code", 0)
        if code == TOPIC_AUTHORIZATION_FAILED:
            why = "not authorized to describe it (the bridge needs Describe and Write on it)"
        elif code == UNKNOWN_TOPIC_OR_PARTITION or (not code and not described.get("partitions")):
            why = "it does not exist (the worker creates it at its first start)"
        elif code:
            why = f"Kafka error code {code}"
        else:
            return
        raise BridgeFailure(
            f"the topic {self.topic!r} (RECIPROCITY_TOPICS__EVENTS) cannot be used: {why}"
        )

    async def _serve_metrics(self) -> None:
        async def metrics_page(request: web.Request) -> web.Response:
            return web.Response(
                body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/metrics", metrics_page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        bind, port = self._options.metrics_bind, self._options.metrics_port
        try:
            await web.TCPSite(runner, bind, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise BridgeFailure(
                f"cannot serve /metrics on {bind}:{port} (RECIPROCITY_BRIDGE__METRICS_PORT): "
                f"{exc.strerror or exc}"
            ) from None
        self._metrics_runner = runner

    async def _stream(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT_SECONDS, sock_connect=CONNECT_TIMEOUT_SECONDS
        )
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stopping.is_set():
                url = subscribe_url(
                    self._options.jetstream_url, self._resume_from(), self._options.max_frame_bytes
                )
                try:
                    async with session.ws_connect(
                        url,
                        heartbeat=HEARTBEAT_SECONDS,
                        max_msg_size=HARD_FRAME_LIMIT_BYTES,
                        decode_text=False,
                    ) as ws:
                        self._ws = ws
                        if self._stopping.is_set():  # stop() came while connecting
                            break
                        self._log(f"connected to {url}")
                        cause = await self._read(ws)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    cause = f"{type(exc).__name__}: {exc}".rstrip(": ")
                finally:
                    self._ws = None
                if self._stopping.is_set():
                    break
                # Resume right after the frames read: once their events are acknowledged the
                # cursor is the last of them.
                await self._settle(wait=None)
                self.metrics.reconnects.inc()
                delay = self._backoff.next_delay()
                self._log(
                    f"Jetstream connection lost ({cause}); reconnecting in {delay:.3g} s from "
                    f"cursor {self._resume_from()}"
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    def _resume_from(self) -> int | None:
        if self._cursor is None:
            return None  # the live tail
        return self._cursor - int(self._options.cursor_rewind_seconds * 1_000_000)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> str:
        """Frames until the connection ends; says why it ended."""
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:  # bytes: decode_text=False
                outcome = read_frame(message.data, self._follows, self._options.max_frame_bytes)
            elif message.type is aiohttp.WSMsgType.BINARY:
                outcome = FrameOutcome("unknown", None, skipped=BINARY_FRAME)
            elif message.type is aiohttp.WSMsgType.ERROR:
                return f"error: {ws.exception()!r}"
            else:
                continue
            await self._handle(outcome)
            self._backoff.reset()  # a frame came through: the connection works
        return f"closed, code {ws.close_code}"

    async def _handle(self, outcome: FrameOutcome) -> None:
        self.metrics.frames.labels(outcome.kind).inc()
        if outcome.skipped is not None:
            self.metrics.skipped.labels(outcome.skipped).inc()
        self._follows.apply(outcome.follow_change)
        sends = []
        for event in outcome.events:
            # Waits only while the producer's buffer is full: backpressure on the reading.
            sends.append(await self._producer.send(self.topic, event.value, key=event.key))
            self.metrics.events.labels(event.type).inc()
        if outcome.time_us is not None:
            self._pending.add(outcome.time_us, sends)
        self._advance()

    def _advance(self) -> None:
        try:
            newest = self._pending.acknowledged()
        except Exception as exc:
            raise BridgeFailure(
                f"Kafka at {self._settings.kafka.bootstrap_servers} did not take an event for "
                f"{self.topic!r}: {describe_failure(exc)}"
            ) from None
        if newest is not None:
            self._cursor = newest
            self.metrics.set_cursor(newest)

    async def _settle(self, wait: float | None) -> None:
        """Waits for the sends so far (at most `wait` seconds, if given) and moves the cursor."""
        sends = self._pending.sends()
        if sends:
            await asyncio.wait(sends, timeout=wait)
        self._advance()

    async def _save(self) -> None:
        cursor = self._cursor
        if cursor is not None and cursor != self._saved:
            try:
                await asyncio.to_thread(self._cursor_file.save, cursor)
            except OSError as exc:
                # Going on would re-send ever more after a restart, unseen.
                raise BridgeFailure(
                    f"cannot write the cursor file {self._cursor_file.path} "
                    f"(RECIPROCITY_BRIDGE__CURSOR_PATH): {exc.strerror or exc}"
                ) from None
            self._saved = cursor

    async def _keep_cursor(self) -> None:
        """Moves the cursor over acknowledged frames while no frame comes, and saves it."""
        while True:
            await asyncio.sleep(CURSOR_SAVE_SECONDS)
            try:
                self._advance()
                await self._save()
            except BridgeFailure as failure:
                self._failure = failure
                self.stop()
                return


async def run_jetstream_bridge(settings: Settings, from_now: bool) -> None:
    """The bridge until SIGINT or SIGTERM, which stop it cleanly (cursor saved); while it is
    still starting (waiting for Kafka) they end it at once, nothing having been sent."""
    bridge = JetstreamBridge(settings, from_now=from_now)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if bridge.streaming:
            bridge.stop()
        else:
            main.cancel()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, on_signal)
    try:
        await bridge.run()
    except asyncio.CancelledError:
        if bridge.streaming:
            raise


def with_overrides(settings: Settings, url: str | None, cursor_file: Path | None) -> Settings:
    """The settings with the command line's --url and --cursor-file in place."""
    changes: dict[str, Any] = {}
    if url is not None:
        changes["jetstream_url"] = url
    if cursor_file is not None:
        changes["cursor_path"] = cursor_file
    if not changes:
        return settings
    bridge = type(settings.bridge).model_validate({**settings.bridge.model_dump(), **changes})
    return settings.model_copy(update={"bridge": bridge})
