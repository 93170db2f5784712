"""Throughput, latency and memory of our worker on real Kafka, against Faust baselines, in one run.

    .venv/bin/python -m bench.speed [--events 200000] [--latency-seconds 60]
                                    [--memory-accounts 100000 1000000] [--no-profile]
                                    [--bootstrap HOST:PORT] [--smoke]
    .venv/bin/python -m bench.speed --latency-only RATE [--latency-seconds 60]
                                    [--latency-profile FILE]

1. Throughput. One 8-partition topic is filled with generated traffic (`generate --seed 11
   --users 20000 --hours 48`, ≥ 200k events, keyed by actor). Then four consumers drain it
   from the start, each in its own process, one after another on the same broker:
   - a raw aiokafka loop that fetches and decodes the JSON: the ceiling for Python here
     (`bench/raw_consumer.py`);
   - a bare Faust agent that only consumes (`bench/bare_faust.py`);
   - the naive Faust baseline, one agent updating a tumbling-window table per event
     (`bench/naive_faust.py`);
   - our worker, `python -m service worker`, all detectors on, default settings.
   Each clock runs from the consumer's first event to its last; for our worker, until every
   stage has processed everything (read from its /metrics).
2. Latency. Our worker, fresh, reads a new topic into which traffic with every injected
   scenario is paced at half the rate it reached in 1, each event stamped with its production
   time; event→alert latency per alert (`bench/latency.py` says how the triggering event is
   identified).
3. Memory. Resident memory and serialized state per tracked account at each size, through the
   core with in-memory tables, one fresh process per size (`bench/state_memory.py`).
4. Profile. Our worker once more over the topic of 1 under cProfile, its time grouped
   (`bench/time_breakdown.py`). A separate run: cProfile slows the worker down.

Prints the tables and writes bench/results/speed.json (and the profile, speed-worker.pstats).
`--latency-only RATE` runs phase 2 alone at RATE events/s, to compare commits quickly; it
prints its result as JSON and writes nothing (`--latency-profile FILE`: its worker under
cProfile, for where the time of a paced stream goes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from bench import latency
from bench.report import report
from bench.time_breakdown import IDLE, Breakdown
from bench.time_breakdown import load as load_profile
from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import LocalKafka, free_port

DEFAULT_OUT = Path("bench/results/speed.json")
# The targets: one worker process ≥ 6× the naive baseline (same run), two processes together
# ≥ 20,000 events/s, event→alert p99 ≤ 250 ms at half the one-process rate.
TARGET_OVER_NAIVE = 6.0
TARGET_TWO_PROCESSES = 20_000
TARGET_P99_MS = 250.0


@dataclass(frozen=True)
class Options:
    seed: int = 11
    users: int = 20_000
    organic_events: int = 200_000  # plus ~9k scenario and follow-back events
    hours: float = 48.0
    partitions: int = 8
    latency_seconds: float = 60.0  # of paced traffic
    memory_accounts: tuple[int, ...] = (100_000, 1_000_000)
    profile: bool = True
    timeout_seconds: float = 1800.0  # per consumer run


# A whole run in well under a minute, for the smoke test.
SMOKE = Options(
    users=400,
    organic_events=2_000,
    hours=24.0,
    latency_seconds=4.0,
    memory_accounts=(1_001, 2_001),
    timeout_seconds=120.0,
)


@dataclass
class Run:
    """Where a run keeps its files and topics; the log gets one line per step."""

    bootstrap: str
    workdir: Path
    log: Callable[[str], None]
    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:6]}")


# --- Kafka ---------------------------------------------------------------------------------


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
        finally:
            await admin.close()

    asyncio.run(create())


def fill_topic(bootstrap: str, topic: str, events: Sequence[dict[str, Any]]) -> None:
    """Every event as one message keyed by its actor, as producers should."""

    async def fill() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        try:
            for event in events:
                await producer.send(topic, orjson.dumps(event), key=str(event["actor_id"]).encode())
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(fill())


# --- our worker ----------------------------------------------------------------------------


def worker_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def stage_events(port: int) -> dict[str, float]:
    """`reciprocity_stage_events_total` per stage, from the worker's /metrics."""
    return stage_events_in(worker_metrics(port))


def stage_events_in(text: str) -> dict[str, float]:
    return {
        stage: float(value)
        for stage, value in re.findall(
            r'^reciprocity_stage_events_total\{stage="(\w+)"\} ([0-9.e+]+)$', text, re.M
        )
    }


def rebalancing_in(text: str) -> bool:
    """`reciprocity_rebalancing`: 1 while the stages rebalance or recover their tables."""
    found = re.search(r"^reciprocity_rebalancing ([0-9.e+]+)$", text, re.M)
    return found is not None and float(found.group(1)) > 0


def stage1_lag_mean_seconds(port: int) -> float | None:
    """Mean of `reciprocity_event_lag_seconds`: wall clock at stage 1 − event time."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    sums = re.search(r"^reciprocity_event_lag_seconds_sum ([0-9.e+]+)$", text, re.M)
    counts = re.search(r"^reciprocity_event_lag_seconds_count ([0-9.e+]+)$", text, re.M)
    if sums is None or counts is None or float(counts.group(1)) == 0:
        return None
    return float(sums.group(1)) / float(counts.group(1))


def metrics_or_none(port: int) -> str | None:
    try:
        return worker_metrics(port)
    except OSError:
        return None  # not listening yet


@dataclass
class Worker:
    """`python -m service worker` with default settings, optionally under cProfile."""

    port: int
    process: subprocess.Popen[bytes]

    def wait_processed(self, expected: int, timeout: float, since: float | None = None) -> float:
        """Seconds from `since` (a `time.perf_counter()`; default: the first event ingested)
        until stage 1 has applied `expected` events and stage 2 has stopped moving (it
        follows stage 1 by a batch or two)."""
        return wait_group_processed([self], expected, timeout, since).seconds

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Until /readyz answers 200 (tables recovered: ingest starts now); returns when, as a
        `time.perf_counter()`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/readyz", timeout=5
                ) as response:
                    if response.status == 200:
                        return time.perf_counter()
            except (OSError, urllib.error.HTTPError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"worker not ready in {timeout:.0f} s")


@dataclass
class Drained:
    """How long workers took to apply a backlog, and their rate once settled: from the first
    poll at which every worker was applying events and none was rebalancing or recovering
    (None if that never lasted to the end, or covered under a second)."""

    seconds: float
    settled_events_per_second: float | None = None
    settled_seconds: float | None = None


def wait_group_processed(
    workers: Sequence[Worker], expected: int, timeout: float, since: float | None = None
) -> Drained:
    """`Worker.wait_processed` for workers sharing one app id: their counts add up."""
    started = since
    deadline = time.monotonic() + timeout
    interval = 0.2
    previous: tuple[float, float] | None = None  # (time, stage-1 count) of the last poll
    last_counts: list[float] | None = None
    settled: tuple[float, float] | None = None  # (time, stage-1 count) when settled
    while time.monotonic() < deadline:
        for one in workers:
            if one.process.poll() is not None:
                raise RuntimeError(f"worker exited with {one.process.returncode}")
        time.sleep(interval)
        texts = [metrics_or_none(one.port) for one in workers]
        if any(text is None for text in texts):
            continue
        counts = [stage_events_in(text) for text in texts if text is not None]
        now = time.perf_counter()
        if started is None and sum(count.get("ingest", 0) for count in counts) > 0:
            started = now
        stage1 = [count.get("stage1", 0) for count in counts]
        applied = sum(stage1)
        moving = last_counts is not None and all(
            new > old for new, old in zip(stage1, last_counts, strict=True)
        )
        if any(rebalancing_in(text) for text in texts if text is not None):
            settled = None
        elif moving and settled is None and applied < expected:
            settled = (now, applied)
        last_counts = stage1
        if started is not None and applied >= expected:
            last = -1.0
            while (
                latest := sum(stage_events(one.port).get("stage2", 0) for one in workers)
            ) != last:
                last = latest
                time.sleep(0.5)
            end = time.perf_counter() - 0.5
            drained = Drained(end - started)
            # Stage 1 finished at `now` (stage 2 follows within a batch): the settled rate is
            # stage 1's, as the whole run's is.
            if settled is not None and now - settled[0] >= 1.0:
                drained.settled_seconds = now - settled[0]
                drained.settled_events_per_second = (applied - settled[1]) / (now - settled[0])
            return drained
        if started is not None:
            # Several workers: look often until they have settled, to see when that was.
            interval = _next_poll(previous, (now, applied), expected)
            if len(workers) > 1 and settled is None:
                interval = min(interval, 0.5)
            previous = (now, applied)
    raise TimeoutError(f"workers did not process {expected} events in {timeout:.0f} s")


def _next_poll(
    previous: tuple[float, float] | None, latest: tuple[float, float], expected: int
) -> float:
    """Seconds until the next look at the worker's progress.

    A rendering of /metrics costs the worker a few ms of CPU (the benchmark turns its
    once-a-second cache off to see fresh counts); polled every 0.2 s, that would be a few % of
    the worker. So look again at half the time stage 1 needs to finish at its latest rate,
    between 0.5 and 5 s: few renderings, and the end is seen within half a second once stage 1
    moves.
    """
    if previous is None or latest[1] <= previous[1]:
        return 1.0  # stage 1 not moving yet (ingest runs ahead of it under a backlog)
    rate = (latest[1] - previous[1]) / (latest[0] - previous[0])
    return min(5.0, max(0.5, (expected - latest[1]) / rate / 2))


@contextmanager
def worker(
    run: Run,
    name: str,
    topics: dict[str, str],
    profile: Path | None,
    app_id: str | None = None,
    render_seconds: str | None = "0",
    extra_env: dict[str, str] | None = None,
) -> Iterator[Worker]:
    """A worker process; several with the same `app_id` share the partitions. `render_seconds`:
    how often /metrics is rendered anew (None: the default)."""
    port = free_port()
    env = {
        **os.environ,
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": run.bootstrap,
        "RECIPROCITY_WORKER__APP_ID": app_id or f"{run.prefix}-{name}",
        "RECIPROCITY_WORKER__WEB_PORT": str(port),
        "RECIPROCITY_WORKER__DATA_DIR": str(run.workdir / f"{name}-data"),
        "RECIPROCITY_WORKER__LOG_LEVEL": "warning",
        "RECIPROCITY_TOPICS__EVENTS": topics["events"],
        "RECIPROCITY_TOPICS__ALERTS": topics["alerts"],
        "RECIPROCITY_TOPICS__DEAD_LETTERS": topics["dead_letters"],
    }
    env.update(extra_env or {})
    if render_seconds is not None:
        # Fresh counts for the progress polls (they are few: see _next_poll).
        env["RECIPROCITY_WORKER__METRICS_RENDER_SECONDS"] = render_seconds
    command = [sys.executable, "-m", "service", "worker"]
    if profile is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile), *command[1:]]
    with open(run.workdir / f"{name}.log", "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield Worker(port, process)
    finally:
        process.send_signal(signal.SIGINT)  # a clean stop, so that cProfile writes its file
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def worker_topics(run: Run, name: str, events_topic: str) -> dict[str, str]:
    return {
        "events": events_topic,
        "alerts": f"{run.prefix}-{name}.alerts",
        "dead_letters": f"{run.prefix}-{name}.dlq",
    }


# --- 1. throughput -------------------------------------------------------------------------

# (key in the result, what it is, module run as `python -m MODULE BOOTSTRAP TOPIC COUNT OUT`)
BASELINES = (
    ("raw_aiokafka", "raw aiokafka loop (fetch + orjson decode)", "bench.raw_consumer"),
    ("bare_faust", "bare Faust agent (consume only)", "bench.bare_faust"),
    ("naive_faust", "naive Faust: windowed table per event", "bench.naive_faust"),
)
OURS = ("ours", "our worker, all detectors on")
OURS_TWO = ("ours_two_processes", "our worker, two processes (same app id)")


def time_baseline(run: Run, module: str, topic: str, count: int, timeout: float) -> float:
    out = run.workdir / f"{module}.seconds"
    done = subprocess.run(
        [sys.executable, "-m", module, run.bootstrap, topic, str(count), str(out)],
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        tail = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
        raise RuntimeError(f"{module} failed (exit {done.returncode}):\n{tail}")
    return float(out.read_text())


def throughput(run: Run, options: Options, topic: str, count: int) -> dict[str, Any]:
    seconds: dict[str, float] = {}
    # Another process's load skews one consumer's figure and not the others': keep it.
    load: dict[str, list[float]] = {}
    for key, _, module in BASELINES:
        run.log(f"throughput: {module} …")
        load[key] = load_average()
        seconds[key] = time_baseline(run, module, topic, count, options.timeout_seconds)
    run.log("throughput: our worker …")
    load[OURS[0]] = load_average()
    with worker(run, "throughput", worker_topics(run, "throughput", topic), None) as ours:
        seconds[OURS[0]] = ours.wait_processed(
            count, options.timeout_seconds, ours.wait_ready(options.timeout_seconds)
        )
    run.log("throughput: our worker, two processes …")
    load[OURS_TWO[0]] = load_average()
    two_topics = worker_topics(run, "two", topic)
    app_id = f"{run.prefix}-two"
    with (
        worker(run, "two-a", two_topics, None, app_id) as first,
        worker(run, "two-b", two_topics, None, app_id) as second,
    ):
        two = wait_group_processed([first, second], count, options.timeout_seconds)
        seconds[OURS_TWO[0]] = two.seconds
    rates = {key: count / value for key, value in seconds.items()}
    ours_rate = rates[OURS[0]]
    return {
        "events": count,
        "consumers": {
            key: {
                "what": what,
                "seconds": round(seconds[key], 3),
                "events_per_second": round(rates[key]),
                "ratio_to_ours": round(rates[key] / ours_rate, 3),
                "load_average_before": load[key],
            }
            for key, what, *_ in (*BASELINES, OURS, OURS_TWO)
        },
        "ours_over_naive": round(ours_rate / rates["naive_faust"], 3),
        "target_ours_over_naive": TARGET_OVER_NAIVE,
        "target_met": ours_rate >= TARGET_OVER_NAIVE * rates["naive_faust"],
        # Once both hold their partitions: the first run's figure includes the second
        # worker's join (a rebalance, and its tables recovered from the changelogs).
        "two_processes_settled": {
            "events_per_second": None
            if two.settled_events_per_second is None
            else round(two.settled_events_per_second),
            "seconds": None if two.settled_seconds is None else round(two.settled_seconds, 1),
        },
        "target_two_processes_events_per_second": TARGET_TWO_PROCESSES,
        "target_two_processes_met": rates[OURS_TWO[0]] >= TARGET_TWO_PROCESSES,
    }


# --- 2. latency ----------------------------------------------------------------------------


def latency_phase(
    run: Run, options: Options, max_rate: float, profile: Path | None = None
) -> dict[str, Any]:
    rate = max_rate / 2
    topic = f"{run.prefix}-latency.events"
    create_topic(run.bootstrap, topic, options.partitions)
    # Follow-backs and the scenarios add a few per cent (and ~1,500 events) to the organic
    # count: the paced time is a little longer than asked, and reported.
    organic = max(1_000, int(rate * options.latency_seconds))
    events = latency.paced_traffic(options.seed + 1, options.users, organic)
    run.log(f"latency: {len(events):,} events at {rate:,.0f}/s into a fresh worker …")
    topics = worker_topics(run, "latency", topic)
    with worker(run, "latency", topics, profile) as ours:
        ours.wait_ready()

        def drained() -> float:
            return ours.wait_processed(len(events), options.timeout_seconds)

        cpu_before, wall_before = process_cpu_seconds(ours.process.pid), time.monotonic()
        measured = asyncio.run(
            latency.measure(run.bootstrap, topic, topics["alerts"], events, rate, drained)
        )
        cpu_after, wall_after = process_cpu_seconds(ours.process.pid), time.monotonic()
        stage1_lag = stage1_lag_mean_seconds(ours.port)
    hops = asyncio.run(latency.hop_delays(run.bootstrap, f"{run.prefix}-latency", topics["alerts"]))
    values = measured.latencies.milliseconds
    return {
        "rate_events_per_second": round(rate),
        "events": len(events),
        "seconds_paced": round(len(events) / rate, 1),
        "drain_seconds_after_last_event": round(measured.drain_seconds, 1),
        "alerts_read": measured.alerts_read,
        "alerts_measured": len(values),
        "alerts_unmatched": measured.latencies.unmatched,
        "p50_ms": round(latency.percentile(values, 50), 1) if values else None,
        "p99_ms": round(latency.percentile(values, 99), 1) if values else None,
        "max_ms": round(max(values), 1) if values else None,
        # Of which, on average, before stage 1 (ingest batching and the first hop).
        "stage1_lag_mean_ms": None if stage1_lag is None else round(stage1_lag * 1000, 1),
        # The worker's CPU while the traffic was paced in, in cores: near 1.0, it was saturated
        # (a paced stream costs more per event than a backlog, which comes in big batches).
        "worker_cpu_cores": None
        if cpu_before is None or cpu_after is None
        else round((cpu_after - cpu_before) / (wall_after - wall_before), 2),
        # From an event's production until the stage message carrying it on was sent.
        "hops": hops,
        "traffic": (
            f"generate --seed {options.seed + 1} --users {options.users} --hours 24 "
            "(every scenario), sent in order, occurred_at = production time"
        ),
    }


# --- 3. memory -----------------------------------------------------------------------------


def memory_phase(options: Options, log: Callable[[str], None]) -> list[dict[str, Any]]:
    sizes = []
    for accounts in options.memory_accounts:
        log(f"memory: {accounts:,} accounts …")
        done = subprocess.run(
            [sys.executable, "-m", "bench.state_memory", str(accounts)],
            capture_output=True,
            timeout=options.timeout_seconds,
            check=True,
        )
        sizes.append(orjson.loads(done.stdout))
    return sizes


# --- 4. profile ----------------------------------------------------------------------------


def profile_phase(run: Run, options: Options, topic: str, count: int, out: Path) -> dict[str, Any]:
    run.log("profile: our worker under cProfile …")
    with worker(run, "profile", worker_topics(run, "profile", topic), out) as ours:
        seconds = ours.wait_processed(
            count, options.timeout_seconds, ours.wait_ready(options.timeout_seconds)
        )
    result: Breakdown = load_profile(str(out))
    return {
        "file": str(out),
        "events": count,
        "seconds_under_profile": round(seconds, 1),
        "busy_seconds": round(result.busy_seconds, 1),
        "idle_seconds": round(result.seconds.get(IDLE, 0.0), 1),
        "groups": {
            group: {"seconds": round(value, 2), "share": round(result.share(group), 4)}
            for group, value in result.seconds.items()
            if group != IDLE
        },
        "top_functions": [
            {"function": name, "own_seconds": round(own, 2), "group": group}
            for name, own, group in result.top_functions
        ],
    }


# --- the run -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of a running process, from /proc (None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime: fields 14 and 15 of proc(5), counted after the ")" that ends field 2.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def kafka_phases(
    bootstrap: str, options: Options, workdir: Path, profile_out: Path, log: Callable[[str], None]
) -> dict[str, Any]:
    run = Run(bootstrap, workdir, log)
    traffic = generate_traffic(
        options.seed,
        users=options.users,
        organic_events=options.organic_events,
        hours=options.hours,
    )
    topic = f"{run.prefix}.events"
    log(f"filling {topic} with {len(traffic.events):,} events …")
    create_topic(bootstrap, topic, options.partitions)
    fill_topic(bootstrap, topic, traffic.events)
    count = len(traffic.events)
    result: dict[str, Any] = {
        "input": (
            f"generate --seed {options.seed} --users {options.users} --organic-events "
            f"{options.organic_events} --hours {options.hours:g}: {count:,} events, "
            f"{options.partitions} partitions, keyed by actor"
        ),
        "load_average_start": load_average(),
    }
    result["throughput"] = throughput(run, options, topic, count)
    ours_rate = result["throughput"]["consumers"]["ours"]["events_per_second"]
    result["latency"] = latency_phase(run, options, ours_rate)
    if options.profile:
        result["profile"] = profile_phase(run, options, topic, count, profile_out)
    return result


def run_benchmark(
    options: Options,
    bootstrap: str | None = None,
    profile_out: Path = Path("bench/results/speed-worker.pstats"),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every phase; on `bootstrap`, or on a LocalKafka started for the Kafka phases."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="reciprocity-speed-"))
    profile_out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if bootstrap is None:
            with LocalKafka() as kafka:
                result = kafka_phases(kafka.bootstrap_servers, options, workdir, profile_out, log)
        else:
            result = kafka_phases(bootstrap, options, workdir, profile_out, log)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["memory"] = memory_phase(options, log)
    result["load_average_end"] = load_average()
    result["machine"] = machine()
    options_json = asdict(options)
    options_json["memory_accounts"] = list(options.memory_accounts)
    result["options"] = options_json
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _mb(value: float) -> str:
    return f"{value / 1e6:,.0f} MB"


def print_tables(result: dict[str, Any], console: Console) -> None:
    flow = result["throughput"]
    table = Table(title=f"Throughput on real Kafka: {result['input']}")
    for column in ("consumer", "seconds", "events/s", "× ours"):
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for figures in flow["consumers"].values():
        table.add_row(
            figures["what"],
            f"{figures['seconds']:.1f}",
            f"{figures['events_per_second']:,}",
            f"{figures['ratio_to_ours']:.2f}",
        )
    console.print(table)
    verdict = "met" if flow["target_met"] else "NOT met"
    console.print(
        f"target ours ≥ {flow['target_ours_over_naive']:g}× naive Faust: {verdict} "
        f"(ours / naive = {flow['ours_over_naive']:.2f})"
    )
    two = flow["consumers"]["ours_two_processes"]["events_per_second"]
    verdict = "met" if flow["target_two_processes_met"] else "NOT met"
    console.print(
        f"target two processes ≥ {flow['target_two_processes_events_per_second']:,} events/s: "
        f"{verdict} ({two:,})"
    )
    settled = flow.get("two_processes_settled", {})
    if settled.get("events_per_second") is not None:
        console.print(
            f"two processes once both held their partitions: "
            f"{settled['events_per_second']:,} events/s over the last {settled['seconds']} s "
            "(the figure above includes the second worker's join and table recovery)"
        )
    else:
        console.print("two processes: never both applying and settled for a second or more")

    lat = result["latency"]
    table = Table(title=f"Event→alert latency at half our rate: {lat['traffic']}")
    for column in (
        "rate",
        "events",
        "alerts read",
        "measured",
        "unmatched",
        "p50",
        "p99",
        "max",
        "mean to stage 1",
        "drain after last",
        "worker CPU",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{lat['rate_events_per_second']:,}/s",
        f"{lat['events']:,}",
        str(lat["alerts_read"]),
        str(lat["alerts_measured"]),
        str(lat["alerts_unmatched"]),
        *(
            "—" if lat[key] is None else f"{lat[key]:,.0f} ms"
            for key in ("p50_ms", "p99_ms", "max_ms", "stage1_lag_mean_ms")
        ),
        f"{lat['drain_seconds_after_last_event']:.1f} s",
        "—" if lat["worker_cpu_cores"] is None else f"{lat['worker_cpu_cores']:.2f} cores",
    )
    console.print(table)
    if lat["p99_ms"] is not None:
        verdict = "met" if lat["p99_ms"] <= TARGET_P99_MS else "NOT met"
        console.print(f"target p99 ≤ {TARGET_P99_MS:g} ms: {verdict}")
    print_hops(lat["hops"], console)

    sizes = result["memory"]
    table = Table(title=f"State per tracked account (core, memory tables): {sizes[0]['stream']}")
    for column in (
        "accounts",
        "events",
        "RSS after",
        "RSS growth/account",
        "state bytes/account",
        "actors / targets / relations",
    ):
        table.add_column(column, justify="right")
    for size in sizes:
        by_table = size["state_bytes_per_account_by_table"]
        table.add_row(
            f"{size['accounts']:,}",
            f"{size['events']:,}",
            _mb(size["resident_bytes_after"]),
            f"{size['resident_bytes_per_account']:,.0f} B",
            f"{size['state_bytes_per_account']:,.0f} B",
            f"{by_table['actors']:.0f} / {by_table['targets']:.0f} / {by_table['relations']:.0f}",
        )
    console.print(table)

    if "profile" in result:
        prof = result["profile"]
        table = Table(
            title=(
                f"Where our worker's CPU goes (cProfile, {prof['events']:,} events, "
                f"{prof['busy_seconds']:.0f} s busy, {prof['idle_seconds']:.0f} s idle)"
            )
        )
        for column in ("group", "seconds", "share"):
            table.add_column(column, justify="left" if column == "group" else "right")
        for group, figures in prof["groups"].items():
            table.add_row(group, f"{figures['seconds']:.1f}", f"{100 * figures['share']:.1f} %")
        console.print(table)
    m = result["machine"]
    console.print(
        f"{m['platform']}, {m['cpus']} CPUs, Python {m['python']}; load average "
        f"{result['load_average_start']} at start, {result['load_average_end']} at end; "
        f"{result['wall_seconds']:.0f} s in all"
    )


def print_hops(hops: dict[str, Any], console: Console) -> None:
    table = Table(
        title="Where the time goes: from an event's production until the message carrying it "
        "on was sent (cumulative; CreateTimes of the worker's own messages)"
    )
    for column in ("sent on", "events", "messages", "events a message", "p50", "p99"):
        table.add_column(column, justify="right")
    names = {
        "stage1": "stage-1 message (ingest)",
        "stage2": "stage-2 message (stage 1)",
        "stage3": "stage-3 message (stage 2)",
        "alert": "alert (the alerting stage)",
    }
    for hop, name in names.items():
        figures = hops[hop]
        messages = figures["messages"]
        table.add_row(
            name,
            f"{figures['items']:,}",
            f"{messages:,}",
            f"{figures['items'] / messages:.1f}" if messages else "—",
            *(
                "—" if figures[key] is None else f"{figures[key]:,.0f} ms"
                for key in ("p50_ms", "p99_ms")
            ),
        )
    console.print(table)


def latency_alone(
    options: Options, rate: float, bootstrap: str | None, profile: Path | None = None
) -> dict[str, Any]:
    """Phase 2 alone at `rate` events/s, on `bootstrap` or a local broker started for it;
    `profile`: the worker runs under cProfile, writing there (its latency is then not ours)."""
    err = Console(stderr=True)
    workdir = Path(tempfile.mkdtemp(prefix="reciprocity-latency-"))
    try:
        if bootstrap is None:
            with LocalKafka() as kafka:
                run = Run(kafka.bootstrap_servers, workdir, err.print)
                return latency_phase(run, options, 2 * rate, profile)
        return latency_phase(Run(bootstrap, workdir, err.print), options, 2 * rate, profile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.speed", description=__doc__.split("\n\n")[0]
    )
    defaults = Options()
    parser.add_argument("--events", type=int, default=defaults.organic_events, help="organic")
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--latency-seconds", type=float, default=defaults.latency_seconds)
    parser.add_argument(
        "--memory-accounts", type=int, nargs="+", default=list(defaults.memory_accounts)
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile run")
    parser.add_argument("--smoke", action="store_true", help="the smoke test's tiny sizes")
    parser.add_argument(
        "--bootstrap", help="an existing broker's host:port (default: start a local one)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--latency-only", type=float, metavar="RATE", help="phase 2 alone, at RATE events/s"
    )
    parser.add_argument(
        "--latency-profile",
        type=Path,
        metavar="FILE",
        help="with --latency-only: the worker under cProfile, its stats to FILE "
        "(python -m bench.time_breakdown FILE groups them): where a paced stream's time goes",
    )
    args = parser.parse_args(argv)
    if args.latency_only is not None:
        only = replace(Options(), users=args.users, latency_seconds=args.latency_seconds)
        alone = latency_alone(only, args.latency_only, args.bootstrap, args.latency_profile)
        print(orjson.dumps(alone).decode())
        print_hops(alone["hops"], Console(stderr=True))
        return
    options = SMOKE if args.smoke else Options()
    if not args.smoke:
        options = replace(
            options,
            organic_events=args.events,
            users=args.users,
            latency_seconds=args.latency_seconds,
            memory_accounts=tuple(args.memory_accounts),
        )
    options = replace(options, profile=not args.no_profile)
    err = Console(stderr=True)
    started = time.perf_counter()
    result = run_benchmark(
        options,
        bootstrap=args.bootstrap,
        profile_out=args.out.with_name(f"{args.out.stem}-worker.pstats"),
        log=lambda message: err.print(
            f"{time.perf_counter() - started:6.1f} s  {message}", highlight=False
        ),
    )
    report(result, print_tables, args.out, width=150)


if __name__ == "__main__":
    main()
