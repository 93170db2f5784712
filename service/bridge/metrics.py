"""The Jetstream bridge's metrics, on a registry of its own (it is not the worker).

No label carries an account: labels are frame kinds, skip reasons and event types, all closed
sets, each present from the start at zero.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from service.bridge.jetstream_mapping import EVENT_TYPES, KINDS, SKIP_REASONS


class BridgeMetrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        now_us: Callable[[], int] = lambda: time.time_ns() // 1000,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._now_us = now_us
        self._cursor_us: int | None = None
        self.frames = Counter(
            "reciprocity_bridge_frames",
            "Jetstream frames read, by kind (unknown: not JSON, or a kind Jetstream lacks).",
            ["kind"],
            registry=self.registry,
        )
        self.skipped = Counter(
            "reciprocity_bridge_frames_skipped",
            "Frames that made no event, by reason (malformed, not mapped, unknown follow).",
            ["reason"],
            registry=self.registry,
        )
        self.events = Counter(
            "reciprocity_bridge_events",
            "Events handed to the Kafka producer, by type (re-sends after a resume included).",
            ["type"],
            registry=self.registry,
        )
        self.reconnects = Counter(
            "reciprocity_bridge_reconnects",
            "Connections to Jetstream lost or refused, each followed by a reconnect.",
            registry=self.registry,
        )
        self.cursor = Gauge(
            "reciprocity_bridge_cursor",
            "The cursor: Jetstream time_us (microseconds since the epoch) of the newest frame "
            "whose events, and all before them, Kafka acknowledged.",
            registry=self.registry,
        )
        self.cursor_lag = Gauge(
            "reciprocity_bridge_cursor_lag_seconds",
            "Wall clock minus the cursor's time: how far behind Jetstream's live tail the "
            "acknowledged events are (NaN before the first cursor).",
            registry=self.registry,
        )
        self.cursor_lag.set_function(self._lag_seconds)
        for kind in KINDS:
            self.frames.labels(kind)
        for reason in SKIP_REASONS:
            self.skipped.labels(reason)
        for event_type in EVENT_TYPES:
            self.events.labels(event_type)

    def set_cursor(self, time_us: int) -> None:
        self._cursor_us = time_us
        self.cursor.set(time_us)

    def _lag_seconds(self) -> float:
        if self._cursor_us is None:
            return math.nan
        return (self._now_us() - self._cursor_us) / 1_000_000

    def render(self) -> bytes:
        return generate_latest(self.registry)
