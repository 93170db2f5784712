"""Every metric the service exports, in one place. Detectors never touch metrics.

No label carries a user id: labels are event types, rejection codes, rules, severities,
stages and tables, all from closed sets.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
            "Alerts published, by rule, severity and mode (enforce: to the alerts topic; "
            "shadow: to the shadow topic only).",
            ["rule", "severity", "mode"],
            registry=registry,
        )
        self.suppressed = Counter(
            "reciprocity_alerts_suppressed",
            "Repeated triggers absorbed by an open episode, by rule.",
            ["rule"],
            registry=registry,
        )
        self.diverted = Counter(
            "reciprocity_alerts_diverted",
            "Alerts of an enforced rule sent to the shadow topic instead of the alerts topic "
            "because the rule's circuit breaker was open (past its hourly or daily quota), by "
            "rule (counted in reciprocity_alerts_total with mode shadow too).",
            ["rule"],
            registry=registry,
        )
        self.breaker_open = Gauge(
            "reciprocity_rule_breaker_open",
            "1 while a rule's circuit breaker is open: the rule reached its alert quota in the "
            "current event-time hour or day and its further alerts are diverted to the shadow "
            "topic. Only rules with a quota have a series.",
            ["rule"],
            registry=registry,
        )
        self.lag = EventLag(_LAG_BUCKETS)
        registry.register(self.lag)
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
        self.tail_gaps_woken = Counter(
            "reciprocity_stage_tail_gaps_woken",
            "Stage partitions whose next message the consumer read or committed past without "
            "handing it over, with nothing after it to reveal the gap: the stage was sent an "
            "empty message to read the range back.",
            ["stage"],
            registry=registry,
        )
        self.stage2_waits = Counter(
            "reciprocity_stage2_waits",
            "Stage-2 messages that waited for stage 1 of their partition to catch up in event "
            "time.",
            registry=registry,
        )
        self.stage2_waits_stopped = Counter(
            "reciprocity_stage2_waits_stopped",
            "Stage-2 messages whose wait for stage 1 a rebalance or a stop interrupted: left "
            "unapplied, to be read again by the partition's next owner.",
            registry=registry,
        )
        self.stage2_waits_skipped = Counter(
            "reciprocity_stage2_waits_skipped",
            "Stage-2 messages applied without a wait because an earlier wait on their partition "
            "reached its bound and stage 1 of that partition has not moved since (stalled).",
            registry=registry,
        )
        self.partitions_refetched = Counter(
            "reciprocity_stage_partitions_refetched",
            "Stage partitions this worker held but Faust had stopped fetching for a minute with "
            "the flow running (faust-streaming #629), put back into fetching.",
            registry=registry,
        )
        self.config_reloads = Counter(
            "reciprocity_config_reloads",
            "Detection files read and applied (on SIGHUP, or when the file's content changed).",
            registry=registry,
        )
        self.config_reload_failures = Counter(
            "reciprocity_config_reload_failures",
            "Detection files refused (unreadable, not YAML or JSON, or invalid settings): the "
            "running settings stayed.",
            registry=registry,
        )
        self.rule_info = Gauge(
            "reciprocity_rule_info",
            "1 for each rule's active rule_version and mode.",
            ["rule", "rule_version", "mode"],
            registry=registry,
        )
        self._rule_labels: dict[str, tuple[str, str, str]] = {}
        self.tracked = Gauge(
            "reciprocity_tracked_accounts",
            "Accounts with state on this worker, by table.",
            ["table"],
            registry=registry,
        )

        self.consumers = ConsumerState()
        registry.register(self.consumers)

    def observe_lags(self, now_s: float, occurred_at_ms: list[int]) -> None:
        self.lag.observe_many(now_s - occurred / 1000 for occurred in occurred_at_ms)

    def show_rules(self, versions: Mapping[str, str], modes: Mapping[str, str]) -> None:
        """Set `reciprocity_rule_info` to the rules' versions and modes, removing the label set
        a rule had before, so that each rule has one series."""
        for rule, version in versions.items():
            labels = (rule, version, modes[rule])
            before = self._rule_labels.get(rule)
            if before == labels:
                continue
            if before is not None:
                self.rule_info.remove(*before)
            self.rule_info.labels(*labels).set(1)
            self._rule_labels[rule] = labels

    def track_sizes(self, sizes: Mapping[str, Callable[[], int]]) -> None:
        for table, size in sizes.items():
            self.tracked.labels(table).set_function(size)


class EventLag(Collector):
    """`reciprocity_event_lag_seconds`, a histogram observed a stage message at a time, where
    prometheus_client's `Histogram` takes a lock and loops over its buckets for every event.
    Read and written on the event loop only (the stages and `/metrics` both run there), so a
    scrape sees counts and sum of the same messages."""

    def __init__(self, upper_bounds: tuple[float, ...]) -> None:
        self._bounds = upper_bounds
        # The `le` labels as prometheus_client's own histograms spell them ("1.0", "+Inf").
        self._names = (*(str(floatToGoString(float(b))) for b in upper_bounds), "+Inf")  # type: ignore[no-untyped-call]
        self._counts = [0] * (len(upper_bounds) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, counts = self._bounds, self._counts
        total = 0.0
        for value in values:
            # Prometheus buckets are "less than or equal": bisect_left finds the first bound
            # at or above the value.
            counts[bisect_left(bounds, value)] += 1
            total += value
        self._sum += total

    def collect(self) -> Iterator[Metric]:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip(self._names, self._counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "reciprocity_event_lag_seconds",
            "Processing time minus event time, at stage 1.",
            buckets=buckets,
            sum_value=self._sum,
        )


class ConsumerState(Collector):
    """What the consumers know, read when scraped: lag per stage (end offset minus committed
    offset, summed over the partitions this worker holds) and rebalances. The worker sets the
    readers once its consumers exist."""

    def __init__(self) -> None:
        self.lag: Callable[[], Mapping[str, int]] = dict
        self.rebalances: Callable[[], Mapping[str, int]] = dict
        self.rebalancing: Callable[[], bool] = lambda: False

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "reciprocity_consumer_lag_messages",
            "Messages not yet committed (end offset minus committed offset) on the partitions "
            "this worker holds, by stage (ingest reads the events topics).",
            labels=["stage"],
        )
        for stage, messages in self.lag().items():
            lag.add_metric([stage], messages)
        yield lag
        rebalances = CounterMetricFamily(
            "reciprocity_rebalances",
            "Rebalances this worker went through, by consumer group (stages: Faust's; "
            "ingest: the ingest consumer's).",
            labels=["consumer"],
        )
        for consumer, count in self.rebalances().items():
            rebalances.add_metric([consumer], count)
        yield rebalances
        yield GaugeMetricFamily(
            "reciprocity_rebalancing",
            "1 while this worker's stages are rebalancing or recovering their tables.",
            value=1 if self.rebalancing() else 0,
        )


class MetricsPage:
    """`/metrics`, rendered at most once per `interval_s`: every scrape in between gets the
    cached body, so that scrapers cannot take the event loop from the stages."""

    def __init__(
        self, registry: CollectorRegistry, interval_s: float, clock: Callable[[], float]
    ) -> None:
        self._registry = registry
        self._interval_s = interval_s
        self._clock = clock
        self._body = b""
        self._rendered_at = float("-inf")
        self.renders = 0

    def body(self) -> bytes:
        now = self._clock()
        if now - self._rendered_at >= self._interval_s:
            self._body = generate_latest(self._registry)
            self._rendered_at = now
            self.renders += 1
        return self._body


class ScrapeTurns:
    """At most `per_second` scrapes are answered a second; the others wait their turn, asleep,
    which costs the event loop nothing. Any number of scrapers in a loop then costs the stages
    what `per_second` scrapes of the cached body cost (a Prometheus pair scraping every 15 s
    asks for 0.13 a second)."""

    def __init__(self, per_second: float, clock: Callable[[], float]) -> None:
        self._spacing = 1.0 / per_second
        self._clock = clock
        self._next = float("-inf")

    def wait_seconds(self) -> float:
        """Take the next turn; returns how long to wait for it."""
        now = self._clock()
        turn = max(now, self._next)
        self._next = turn + self._spacing
        return turn - now
