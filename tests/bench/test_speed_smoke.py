"""A tiny run of the speed benchmark (bench/speed.py) on the session's broker, so that it cannot
rot; and the two calculations it reports with, on inputs small enough to check by hand.

Figures are checked for sanity only (positive, measured, consistent): how fast is the
benchmark's own output, not a test's.
"""

from __future__ import annotations

import cProfile
from pathlib import Path

import orjson
import pytest

from bench.latency import Produced, alert_latencies, percentile
from bench.speed import SMOKE, main
from bench.time_breakdown import STAGE1, breakdown


@pytest.mark.kafka
def test_speed_benchmark_runs_every_phase(
    kafka: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "speed.json"
    main(["--smoke", "--bootstrap", kafka, "--out", str(out)])
    printed = capsys.readouterr().out
    assert "naive Faust" in printed and "p99" in printed and "stage-1 core" in printed
    result = orjson.loads(out.read_bytes())

    flow = result["throughput"]
    assert flow["events"] > 2_000
    consumers = flow["consumers"]
    assert set(consumers) == {
        "raw_aiokafka",
        "bare_faust",
        "naive_faust",
        "ours",
        "ours_two_processes",
    }
    for figures in consumers.values():
        assert figures["events_per_second"] > 0 and figures["seconds"] > 0
    assert consumers["ours"]["ratio_to_ours"] == 1.0
    assert isinstance(flow["target_met"], bool)
    assert isinstance(flow["target_two_processes_met"], bool)

    latency = result["latency"]
    assert latency["alerts_measured"] >= 1, latency
    assert latency["alerts_unmatched"] == 0, "an alert's window_end named no produced event"
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert latency["worker_cpu_cores"] > 0  # read from /proc: these machines run Linux
    hops = latency["hops"]
    assert "Where the time goes" in printed
    # Every event is carried by a stage-1 message; each later hop carries some of them.
    assert hops["stage1"]["items"] == latency["events"]
    assert hops["alert"]["items"] == hops["alert"]["messages"] == latency["alerts_read"]
    for hop in ("stage1", "stage2", "alert"):
        figures = hops[hop]
        assert 0 < figures["messages"] <= figures["items"], (hop, figures)
        assert 0 <= figures["p50_ms"] <= figures["p99_ms"], (hop, figures)

    sizes = result["memory"]
    assert [size["accounts"] for size in sizes] == list(SMOKE.memory_accounts)
    for size in sizes:
        assert size["events"] == 3 * size["accounts"]
        assert size["state_bytes_per_account"] > 0
        assert size["resident_bytes_per_account"] > 0

    profile = result["profile"]
    assert profile["groups"][STAGE1]["seconds"] > 0
    assert Path(profile["file"]).exists()


def test_latency_is_read_time_minus_the_triggering_events_production_time() -> None:
    produced: Produced = {1_000: [("spammer", "victim")], 2_000: [("fan", "star")]}
    received = [
        (1.25, {"window_end": "1970-01-01T00:00:01.000Z", "subject_id": "spammer"}),
        (2.5, {"window_end": "1970-01-01T00:00:02.000Z", "subject_id": "star"}),  # the target
        (3.0, {"window_end": "1970-01-01T00:00:02.000Z", "subject_id": "stranger"}),
        (3.0, {"window_end": "1970-01-01T00:00:02.500Z", "subject_id": "fan"}),
    ]
    measured = alert_latencies(received, produced)
    assert measured.milliseconds == [250.0, 500.0]
    assert measured.unmatched == 2
    assert percentile([5.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert percentile([float(x) for x in range(1, 101)], 99) == 99.0


def test_time_breakdown_gives_a_stages_callees_to_the_stage() -> None:
    from service.cli import wall_clock_ms
    from service.core.models import Event
    from service.core.replay import Replayer
    from service.devtools.generate import generate_traffic
    from service.settings import DetectionSettings

    events = [Event.model_validate(e) for e in generate_traffic(5, organic_events=500).events]
    replayer = Replayer(DetectionSettings(), wall_clock_ms)
    profiler = cProfile.Profile()
    profiler.enable()
    for event in events:
        replayer.run(event)
    profiler.disable()
    profiler.create_stats()
    result = breakdown(profiler.stats)
    # Timeline updates (windows.py) and hashing (a built-in) happen inside the stages only.
    assert result.share(STAGE1) > 0.2
    assert sum(result.seconds.values()) == pytest.approx(
        sum(row[2] for row in profiler.stats.values())
    )
