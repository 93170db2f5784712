"""A tiny run of the scrape benchmark (bench/scrape.py) on the session's broker, so that it
cannot rot. Figures are checked for sanity only: the targets belong to its own output."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scrape import Options, at_count, run_benchmark


def test_at_count_interpolates_between_polls() -> None:
    points = [(0.0, 0, 1.0), (1.0, 100, 2.0), (3.0, 300, 3.0)]
    assert at_count(points, 50) == (0.5, 1.5)
    assert at_count(points, 200) == (2.0, 2.5)


@pytest.mark.kafka
def test_scrape_benchmark_runs_all_three_drains(kafka: str, tmp_path: Path) -> None:
    result = run_benchmark(
        Options(organic_events=3_000, users=500, scrapers=5, idle_seconds=1.0), kafka, print
    )
    runs = result["runs"]
    assert [row["scrapers"] for row in runs] == [0, 5, 0]
    assert all(row["events_per_second"] > 0 for row in runs)
    assert runs[1]["idle"]["scrapes_answered"] > 0
    assert result["share_of_unscraped_rate"] > 0
