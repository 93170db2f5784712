"""Every metric the service exports, in one place. Detectors never touch metrics.

No label carries a user id: labels are event types, rejection codes, rules, severities,
stages and tables, all from closed sets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400)
_STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "reciprocity_events",
            "Events processed by stage 1, by type (self-targeted ones included).",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "reciprocity_events_rejected",
            "Messages sent to the dead-letter topic, by error code.",
            ["code"],
            registry=registry,
        )
        self.duplicates = Counter(
            "reciprocity_events_duplicate",
            "Re-delivered events (same event_id) that changed nothing, by stage.",
            ["stage"],
            registry=registry,
        )
        self.late = Counter(
            "reciprocity_events_late",
            "Events older than their account's lateness bound, ignored, by stage.",
            ["stage"],
            registry=registry,
        )
        self.alerts = Counter(
            "reciprocity_alerts",
            "Alerts published, by rule and severity.",
            ["rule", "severity"],
            registry=registry,
        )
        self.suppressed = Counter(
            "reciprocity_alerts_suppressed",
            "Repeated triggers absorbed by an open episode, by rule.",
            ["rule"],
            registry=registry,
        )
        self.lag = Histogram(
            "reciprocity_event_lag_seconds",
            "Processing time minus event time, at stage 1.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "reciprocity_stage_batch_seconds",
            "Time to apply one stage message (a batch of events) and hand its outputs over, "
            "by stage; its completion (acknowledgements, state, marker) runs behind.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=registry,
        )
        self.stage_events = Counter(
            "reciprocity_stage_events",
            "Items processed, by stage.",
            ["stage"],
            registry=registry,
        )
        self.state_writes = Counter(
            "reciprocity_state_writes",
            "Changelog records written (values coalesced per key and round of commits).",
            registry=registry,
        )
        self.replayed_messages = Counter(
            "reciprocity_stage_messages_replayed",
            "Stage messages skipped after a restart because their effects were already stored.",
            ["stage"],
            registry=registry,
        )
        self.missed_messages = Counter(
            "reciprocity_input_missed_messages",
            "Input messages the consumer skipped (Faust drops some around a rebalance) and the "
            "stage read back itself before going on.",
            ["stage"],
            registry=registry,
        )
        self.stage2_waits = Counter(
            "reciprocity_stage2_waits",
            "Stage-2 messages that waited for stage 1 of their partition to catch up in event "
            "time.",
            registry=registry,
        )
        self.tracked = Gauge(
            "reciprocity_tracked_accounts",
            "Accounts with state on this worker, by table.",
            ["table"],
            registry=registry,
        )

    def observe_lags(self, now_s: float, occurred_at_ms: list[int]) -> None:
        observe = self.lag.observe
        for occurred in occurred_at_ms:
            observe(now_s - occurred / 1000)

    def track_sizes(self, sizes: Mapping[str, Callable[[], int]]) -> None:
        for table, size in sizes.items():
            self.tracked.labels(table).set_function(size)
