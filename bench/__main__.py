"""Replay throughput: generated traffic through the whole core in one process.

Prints events/s of decode + all three stages and writes bench/results/replay.json. The worker
on Kafka against Faust baselines is `python -m bench.speed`, detection quality on real traffic
`python -m bench.quality`; `make bench` runs all three.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Iterable
from pathlib import Path

import orjson

from service.cli import tune_gc, wall_clock_ms
from service.core.decoding import EventDecoder, Rejection
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.runtime.tables import ACTOR_CODEC, TARGET_CODEC, Codec
from service.settings import Settings


def replay_throughput(
    seed: int, users: int, organic_events: int, hours: float
) -> dict[str, object]:
    traffic = generate_traffic(seed, users=users, hours=hours, organic_events=organic_events)
    lines = [orjson.dumps(event) for event in traffic.events]
    settings = Settings()
    tune_gc()
    decoder = EventDecoder(settings.input, wall_clock_ms)
    replayer = Replayer(settings.detection, wall_clock_ms)
    alerts = 0
    started = time.perf_counter()
    for line in lines:
        event = decoder.decode(line)
        if isinstance(event, Rejection):
            raise SystemExit(f"generated traffic rejected: {event}")
        alerts += len(replayer.submit(event))
    alerts += len(replayer.flush())
    elapsed = time.perf_counter() - started
    return {
        "benchmark": "replay_throughput",
        "events": len(lines),
        "accounts": len(replayer.tables.actors.keys() | replayer.tables.targets.keys()),
        "alerts": alerts,
        "seconds": round(elapsed, 3),
        "events_per_second": round(len(lines) / elapsed),
        # What the worker's changelogs would hold per account, once the stream is replayed.
        "state_bytes": {
            "actors": _sizes(replayer.tables.actors.values(), ACTOR_CODEC),
            "targets": _sizes(replayer.tables.targets.values(), TARGET_CODEC),
        },
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def _sizes(values: Iterable[object], codec: Codec) -> dict[str, float]:
    sizes = [len(codec.dumps(value)) for value in values]
    return {"mean": round(statistics.fmean(sizes)), "max": max(sizes)} if sizes else {}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--organic-events", type=int, default=300_000)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/replay.json"))
    args = parser.parse_args()
    result = replay_throughput(args.seed, args.users, args.organic_events, args.hours)
    print(f"{'benchmark':<20} {'events':>9} {'seconds':>8} {'events/s':>10} {'alerts':>7}")
    print(
        f"{'replay (1 process)':<20} {result['events']:>9,} {result['seconds']:>8} "
        f"{result['events_per_second']:>10,} {result['alerts']:>7}"
    )
    for table, size in result["state_bytes"].items():  # type: ignore[attr-defined]
        print(f"state per account, {table}: mean {size['mean']:,} B, max {size['max']:,} B")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
