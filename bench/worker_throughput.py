"""End-to-end events/s of one worker, all detectors on, and of a bare Faust agent that only
consumes the same topic, in one run on a real local broker.

    python -m bench.worker_throughput [--events N]

The topic is filled first; each consumer then drains it from the start. For the worker the
clock runs from its first ingested event until every stage has processed everything.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

from service.generate import generate_traffic
from service.local_kafka import LocalKafka, free_port
from tests.worker.harness import create_topics, produce


def metric(port: int, name: str, label: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    match = re.search(rf'^{name}\{{stage="{label}"\}} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def run_worker(
    bootstrap: str, topic: str, expected: int, workdir: Path, profile: Path | None
) -> float:
    port = free_port()
    env = {
        **os.environ,
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RECIPROCITY_WORKER__APP_ID": f"bench-{port}",
        "RECIPROCITY_WORKER__WEB_PORT": str(port),
        "RECIPROCITY_WORKER__DATA_DIR": str(workdir / "data"),
        "RECIPROCITY_WORKER__LOG_LEVEL": "warning",
        "RECIPROCITY_TOPICS__EVENTS": topic,
        "RECIPROCITY_TOPICS__ALERTS": f"{topic}.alerts",
        "RECIPROCITY_TOPICS__DEAD_LETTERS": f"{topic}.dlq",
    }
    command = [sys.executable, "-m", "service", "worker"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "service", "worker"]
    with open(workdir / "worker.log", "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = None
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                ingested = metric(port, "reciprocity_stage_events_total", "ingest")
                stage1 = metric(port, "reciprocity_stage_events_total", "stage1")
            except OSError:
                continue
            if started is None and ingested > 0:
                started = time.perf_counter()
            if started is not None and stage1 >= expected:
                # stage 2 follows within a batch or two; wait until it stops moving
                last = -1.0
                while (now := metric(port, "reciprocity_stage_events_total", "stage2")) != last:
                    last = now
                    time.sleep(0.5)
                return time.perf_counter() - started - 0.5
        raise TimeoutError("worker did not finish")
    finally:
        process.send_signal(2)  # SIGINT: a clean stop, so cProfile writes its file
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_throughput")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument(
        "--profile", type=Path, default=None, help="Also write a cProfile of the worker here."
    )
    args = parser.parse_args()
    traffic = generate_traffic(11, users=20_000, organic_events=args.events, hours=48)
    lines = [orjson.dumps(e) for e in traffic.events]
    workdir = Path(tempfile.mkdtemp(prefix="reciprocity-bench-"))
    with LocalKafka() as kafka:
        bootstrap = kafka.bootstrap_servers
        create_topics(bootstrap, ["bench.events"], partitions=8)
        produce(bootstrap, "bench.events", lines)
        figure = workdir / "bare_seconds"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.bare_faust",
                bootstrap,
                "bench.events",
                str(len(lines)),
                str(figure),
            ],
            capture_output=True,
            timeout=1800,
            check=True,
        )
        bare_seconds = float(figure.read_text())
        ours = run_worker(bootstrap, "bench.events", len(lines), workdir, args.profile)
    n = len(lines)
    result = {
        "events": n,
        "worker_seconds": round(ours, 2),
        "worker_events_per_second": round(n / ours),
        "bare_faust_seconds": round(bare_seconds, 2),
        "bare_faust_events_per_second": round(n / bare_seconds),
        "worker_to_bare_ratio": round((n / ours) / (n / bare_seconds), 3),
    }
    print(f"{'consumer':<34} {'seconds':>8} {'events/s':>10}")
    print(f"{'worker, all detectors on':<34} {ours:>8.2f} {n / ours:>10,.0f}")
    print(
        f"{'bare Faust agent (consume only)':<34} {bare_seconds:>8.2f} {n / bare_seconds:>10,.0f}"
    )
    print(f"worker / bare = {result['worker_to_bare_ratio']}")
    out = Path("bench/results/worker_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
