"""A small run of each benchmark, so they cannot rot. Figures are not checked: speed targets
belong to the benchmark's own output."""

from __future__ import annotations

from bench.__main__ import replay_throughput


def test_replay_benchmark_runs_and_reports() -> None:
    result = replay_throughput(seed=3, users=400, organic_events=2_000, hours=24.0)
    assert result["events"] > 2_000
    assert result["alerts"] > 0
    assert isinstance(result["events_per_second"], int) and result["events_per_second"] > 0
