"""What `/metrics` scrapers cost the stream: one worker's processing rate with and without 200
concurrent scrapers, on real Kafka.

    .venv/bin/python -m bench.scrape [--events 200000] [--scrapers 200] [--bootstrap HOST:PORT]

An 8-partition topic is filled with generated traffic (`generate --seed 11`, keyed by actor).
Three fresh workers with default settings (apart from their app ids) drain it one after the
other: alone, while `--scrapers` clients in another process request `/metrics` in a loop (each
sends its next request as soon as the last one is answered), and alone again.

- **Rate** is read from Kafka, not from the worker's `/metrics` (which the scrapers queue for):
  ingest commits a batch once its stage-1 messages are acknowledged and it runs at most two
  batches ahead of stage 1, so the sum of its consumer group's committed offsets is the
  worker's progress. The rate is taken between 10 % and 90 % of the events (start-up and the
  tail are left out of both runs alike).
- **Cost of a scrape** to the worker: once drained, the scraped worker idles 10 s alone and
  10 s with the scrapers; its CPU seconds (user + system, `/proc`) the second time less the
  first, per scrape answered.

Target (issue 12): the scraped rate ≥ 80 % of the unscraped one, and ≤ 1 ms of the worker's
time per scrape. Writes bench/results/scrape.json.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from bench.report import report
from bench.speed import Run, create_topic, fill_topic, worker, worker_topics
from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import LocalKafka

DEFAULT_OUT = Path("bench/results/scrape.json")
TARGET_SHARE = 0.80
TARGET_MS_PER_SCRAPE = 1.0
PARTITIONS = 8
# Progress is read this often; the rate is taken between these shares of the events.
POLL_SECONDS = 0.2
FROM_SHARE, TO_SHARE = 0.10, 0.90


@dataclass(frozen=True)
class Options:
    organic_events: int = 200_000
    users: int = 20_000
    scrapers: int = 200
    scrapes_per_second: float | None = None  # None: the worker's default
    idle_seconds: float = 10.0
    timeout_seconds: float = 600.0


# --- progress, read from Kafka ------------------------------------------------------------


async def _end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


async def _follow_progress(
    bootstrap: str, group: str, topic: str, total: int, pid: int, timeout: float
) -> list[tuple[float, int, float]]:
    """(perf_counter, events committed, worker CPU seconds) until all `total` events are
    committed, every POLL_SECONDS."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    points: list[tuple[float, int, float]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            offsets = await admin.list_consumer_group_offsets(group)
            done = sum(
                meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0
            )
            points.append((time.perf_counter(), done, cpu_seconds(pid)))
            if done >= total:
                return points
            await asyncio.sleep(POLL_SECONDS)
    finally:
        await admin.close()
    raise TimeoutError(f"{group} committed {points[-1][1] if points else 0} of {total}")


def at_count(points: Sequence[tuple[float, int, float]], count: float) -> tuple[float, float]:
    """(time, CPU seconds) when the committed count first reached `count`, interpolated
    linearly between the polls around it."""
    previous = points[0]
    for point in points:
        if point[1] >= count:
            if point[1] == previous[1]:
                return point[0], point[2]
            share = (count - previous[1]) / (point[1] - previous[1])
            return (
                previous[0] + share * (point[0] - previous[0]),
                previous[2] + share * (point[2] - previous[2]),
            )
        previous = point
    raise ValueError(f"never reached {count}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- scrapers -------------------------------------------------------------------------------


async def _scrape(url: str, scrapers: int, stop: Any) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    stamps: list[float] = []  # perf_counter of each answered scrape

    async def one(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                async with session.get(url) as response:
                    await response.read()
                    key = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
            now = time.perf_counter()
            statuses[key] = statuses.get(key, 0) + 1
            latencies.append(now - started)
            stamps.append(now)

    timeout = aiohttp.ClientTimeout(total=None)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(one(session) for _ in range(scrapers)))
    return {"latencies": latencies, "statuses": statuses, "stamps": stamps}


def _scrapers_process(url: str, scrapers: int, stop: Any, out: Any) -> None:
    out.send(asyncio.run(_scrape(url, scrapers, stop)))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


# --- one worker -----------------------------------------------------------------------------


class Scrapers:
    """`count` clients in another process, each requesting /metrics again as soon as it is
    answered, until `stop()`."""

    def __init__(self, port: int, count: int) -> None:
        self._stop = multiprocessing.Event()
        self._receive, send = multiprocessing.Pipe(duplex=False)
        self._process = multiprocessing.Process(
            target=_scrapers_process,
            args=(f"http://127.0.0.1:{port}/metrics", count, self._stop, send),
            daemon=True,
        )
        self._process.start()

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        result: dict[str, Any] = {"latencies": [], "statuses": {}, "stamps": []}
        if self._receive.poll(60):
            result = self._receive.recv()
        self._process.join(10)
        return result


def drain(
    run: Run, name: str, topic: str, total: int, options: Options, scrapers: int
) -> dict[str, Any]:
    """A fresh worker (default settings) drains the topic, with `scrapers` clients on its
    /metrics meanwhile. With scrapers, the drained worker then idles 10 s alone and 10 s
    scraped: the CPU time it spends the second time, less the first, is what the scrapes cost."""
    topics = worker_topics(run, name, topic)
    extra = {}
    if scrapers and options.scrapes_per_second is not None:
        extra["RECIPROCITY_WORKER__METRICS_SCRAPES_PER_SECOND"] = str(options.scrapes_per_second)
    with worker(run, name, topics, None, render_seconds=None, extra_env=extra) as ours:
        ours.wait_ready()
        pid = ours.process.pid
        clients = Scrapers(ours.port, scrapers) if scrapers else None
        try:
            points = asyncio.run(
                _follow_progress(
                    run.bootstrap, f"{run.prefix}-{name}-ingest", topic, total, pid,
                    options.timeout_seconds,
                )
            )  # fmt: skip
        finally:
            scraped = clients.stop() if clients is not None else None
        idle = (
            idle_scrape_cost(ours.port, pid, scrapers, options.idle_seconds) if scrapers else None
        )
    (start, cpu_start), (end, cpu_end) = (
        at_count(points, total * FROM_SHARE),
        at_count(points, total * TO_SHARE),
    )
    row: dict[str, Any] = {
        "scrapers": scrapers,
        "events_per_second": round(total * (TO_SHARE - FROM_SHARE) / (end - start)),
        "seconds": round(end - start, 2),
        "worker_cpu_seconds": round(cpu_end - cpu_start, 3),
    }
    if scraped is not None:
        latencies = scraped["latencies"]
        row.update(
            scrapes_answered=sum(1 for stamp in scraped["stamps"] if start <= stamp <= end),
            scrape_statuses=scraped["statuses"],
            scrape_p50_ms=round(percentile(latencies, 50) * 1000, 1) if latencies else None,
            scrape_p99_ms=round(percentile(latencies, 99) * 1000, 1) if latencies else None,
            idle=idle,
        )
    return row


def idle_scrape_cost(port: int, pid: int, scrapers: int, seconds: float) -> dict[str, Any]:
    time.sleep(2.0)  # the last stage messages settle
    before = cpu_seconds(pid)
    time.sleep(seconds)
    alone = cpu_seconds(pid) - before
    clients = Scrapers(port, scrapers)
    time.sleep(1.0)  # connections open
    before = cpu_seconds(pid)
    started = time.perf_counter()
    time.sleep(seconds)
    scraped = cpu_seconds(pid) - before
    ended = time.perf_counter()
    result = clients.stop()
    answered = sum(1 for stamp in result["stamps"] if started <= stamp <= ended)
    return {
        "seconds": seconds,
        "cpu_seconds_alone": round(alone, 3),
        "cpu_seconds_scraped": round(scraped, 3),
        "scrapes_answered": answered,
        "ms_per_scrape": round((scraped - alone) / answered * 1000, 3) if answered else None,
    }


def run_benchmark(
    options: Options, bootstrap: str | None, log: Callable[[str], None]
) -> dict[str, Any]:
    events = generate_traffic(11, users=options.users, organic_events=options.organic_events).events
    with tempfile.TemporaryDirectory(prefix="reciprocity-scrape-") as workdir:
        if bootstrap is None:
            with LocalKafka() as kafka:
                return _measure(Run(kafka.bootstrap_servers, Path(workdir), log), options, events)
        return _measure(Run(bootstrap, Path(workdir), log), options, events)


def _measure(run: Run, options: Options, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    topic = f"{run.prefix}.events"
    create_topic(run.bootstrap, topic, PARTITIONS)
    run.log(f"filling {topic} with {len(events):,} events …")
    fill_topic(run.bootstrap, topic, events)
    # Unscraped before and after the scraped run: the machine's drift shows in the two.
    rows = []
    for name, scrapers in (("quiet-1", 0), ("scraped", options.scrapers), ("quiet-2", 0)):
        run.log(f"{name}: a fresh worker drains the topic with {scrapers} scrapers …")
        rows.append(drain(run, name, topic, len(events), options, scrapers))
    unscraped = (rows[0]["events_per_second"] + rows[2]["events_per_second"]) / 2
    share = rows[1]["events_per_second"] / unscraped
    return {
        "events": len(events),
        "partitions": PARTITIONS,
        "runs": rows,
        "share_of_unscraped_rate": round(share, 3),
        "worker_ms_per_scrape": rows[1]["idle"]["ms_per_scrape"],
        "scrapes_per_second_setting": options.scrapes_per_second,
        "targets": {"share": TARGET_SHARE, "ms_per_scrape": TARGET_MS_PER_SCRAPE},
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
    }


def print_tables(result: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"/metrics scrapers against one worker: {result['events']:,} events, "
        f"{result['partitions']} partitions, rate between {FROM_SHARE:.0%} and {TO_SHARE:.0%} "
        "of them, read from Kafka"
    )
    for column in ("run", "scrapers", "events/s", "worker CPU s", "scrapes answered",
                   "scrape p50 ms", "scrape p99 ms", "answers"):  # fmt: skip
        table.add_column(column)
    for number, row in enumerate(result["runs"], 1):
        table.add_row(
            str(number),
            str(row["scrapers"]),
            f"{row['events_per_second']:,}",
            f"{row['worker_cpu_seconds']:.2f}",
            f"{row.get('scrapes_answered', 0):,}",
            str(row.get("scrape_p50_ms") or "-"),
            str(row.get("scrape_p99_ms") or "-"),
            ", ".join(f"{k}: {v:,}" for k, v in sorted(row.get("scrape_statuses", {}).items()))
            or "-",
        )
    console.print(table)
    idle = result["runs"][1]["idle"]
    console.print(
        f"Drained worker, {idle['seconds']:.0f} s alone then {idle['seconds']:.0f} s with the "
        f"scrapers: {idle['cpu_seconds_alone']:.3f} and {idle['cpu_seconds_scraped']:.3f} CPU s, "
        f"{idle['scrapes_answered']:,} scrapes answered."
    )
    share = result["share_of_unscraped_rate"]
    cost = result["worker_ms_per_scrape"]
    console.print(
        f"rate with scrapers: {share:.0%} of the mean unscraped rate "
        f"(target ≥ {TARGET_SHARE:.0%}: {'met' if share >= TARGET_SHARE else 'NOT met'}); "
        f"worker time per scrape: {'-' if cost is None else f'{cost:.3f} ms'} "
        f"(target ≤ {TARGET_MS_PER_SCRAPE} ms: "
        f"{'met' if cost is not None and cost <= TARGET_MS_PER_SCRAPE else 'NOT met'})"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scrape", description=__doc__.split("\n\n")[0]
    )
    defaults = Options()
    parser.add_argument("--events", type=int, default=defaults.organic_events, help="organic")
    parser.add_argument("--scrapers", type=int, default=defaults.scrapers)
    parser.add_argument(
        "--scrapes-per-second",
        type=float,
        help="the scraped worker's RECIPROCITY_WORKER__METRICS_SCRAPES_PER_SECOND "
        "(default: its default; a large value shows what the turns are for)",
    )
    parser.add_argument("--bootstrap", help="an existing broker's host:port")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    options = Options(
        organic_events=args.events,
        scrapers=args.scrapers,
        scrapes_per_second=args.scrapes_per_second,
    )
    err = Console(stderr=True)
    started = time.perf_counter()
    result = run_benchmark(
        options,
        args.bootstrap,
        lambda message: err.print(
            f"{time.perf_counter() - started:6.1f} s  {message}", highlight=False
        ),
    )
    report(result, print_tables, args.out, width=150)


if __name__ == "__main__":
    main()
