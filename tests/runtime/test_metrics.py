"""`/metrics` for many scrapers: rendered at most once per interval, answered at most so often."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.runtime.metrics import EventLag, MetricsPage, ScrapeTurns


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_scrape_within_the_interval_gets_the_cached_body() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "Things.", registry=registry)
    clock = Clock()
    page = MetricsPage(registry, 1.0, clock)
    first = page.body()
    counter.inc()
    clock.now += 0.5
    assert page.body() == first and page.renders == 1
    clock.now += 0.5
    assert page.body() != first and page.renders == 2


@pytest.mark.parametrize(
    ("per_second", "arrivals", "waits"),
    [
        # Four at once at 20 a second: each waits 50 ms more than the one before.
        (20.0, [0.0] * 4, [0.0, 0.05, 0.10, 0.15]),
        # Spaced wider than the turns: nobody waits.
        (20.0, [0.0, 0.06, 0.2], [0.0, 0.0, 0.0]),
        # A scrape just inside the previous turn waits for the rest of it.
        (10.0, [0.0, 0.04], [0.0, 0.06]),
    ],
)
def test_scrapes_take_turns(per_second: float, arrivals: list[float], waits: list[float]) -> None:
    clock = Clock()
    turns = ScrapeTurns(per_second, clock)
    got = []
    for arrival in arrivals:
        clock.now = 100.0 + arrival
        got.append(turns.wait_seconds())
    assert got == pytest.approx(waits)


def test_two_hundred_scrapers_are_answered_at_the_set_rate() -> None:
    clock = Clock()
    turns = ScrapeTurns(20.0, clock)
    waits = [turns.wait_seconds() for _ in range(200)]
    # The last of 200 simultaneous scrapes is answered 199 turns later: 9.95 s.
    assert max(waits) == pytest.approx(9.95)
    assert sum(1 for wait in waits if wait < 0.99) == 20  # the first second: 20 of them


BOUNDS = (0.05, 0.1, 1, 86400)


def exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client's Histogram adds a `_created` sample; the rest must be the same.
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


@pytest.mark.parametrize(
    "lags",
    [
        [],
        [0.05, 0.1, 1.0, 86400.0],  # on the bounds: "less than or equal" buckets
        [0.0499, 0.0501, 0.0999, 0.1001, 0.999, 1.001],  # either side of them
        [-3.0, 0.0],  # events from the future (clock skew) count in the first bucket
        [86400.5, 1e9],  # above every bound: +Inf only
        [0.2] * 5 + [2.0] * 3,
    ],
)
def test_event_lag_exposes_what_a_histogram_observing_each_lag_would(lags: list[float]) -> None:
    one_by_one = CollectorRegistry()
    histogram = Histogram(
        "reciprocity_event_lag_seconds",
        "Processing time minus event time, at stage 1.",
        buckets=BOUNDS,
        registry=one_by_one,
    )
    for lag in lags:
        histogram.observe(lag)
    in_bulk = CollectorRegistry()
    event_lag = EventLag(BOUNDS)
    in_bulk.register(event_lag)
    # Observed as two stage messages, as stage 1 does.
    event_lag.observe_many(lags[: len(lags) // 2])
    event_lag.observe_many(iter(lags[len(lags) // 2 :]))
    assert exposition(in_bulk) == exposition(one_by_one)
