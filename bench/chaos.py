"""A fault-injection campaign on real Kafka: workers killed, stopped, paused, added and removed,
and the broker stopped, while generated traffic is produced; then every account's counts and
the alerts are compared with `replay` of the same events.

    .venv/bin/python -m bench.chaos [--faults 20] [--seed 1] [--rate 300]

- A local broker, an 4-partition events topic, two workers (`reciprocity worker`, memory
  store) with one app id.
- Generated traffic (`generate --seed 7`, every scenario) is produced at `--rate` events/s,
  keyed by actor, from before the first fault to `--spacing` seconds after the last; `replay`
  gets exactly what was produced.
- `--faults` faults in a seeded random order, one every `--spacing` seconds: SIGKILL a worker
  (restarted), SIGTERM a worker (restarted), stop the broker for 10–40 s, add a worker (up to
  three), remove one (down to one), SIGSTOP a worker past the consumer session timeout
  (then SIGCONT), fill the disk of the RocksDB worker for 10–30 s (then free it).
- With the disk fault among the kinds, the first worker uses `rocksdb://` with its data dir on
  a tmpfs of `--disk-mb` (mounting one needs root; without it the kind is left out, and the
  campaign says so). Like a pod with its own volume, that worker restarts on the same data
  dir whenever it is killed, stopped or exits, and it is never the one removed.
- A worker that exits on its own (a failure it cannot recover from ends the process with exit
  code 1) is restarted, as an orchestrator would; the table says so.
- Recovery after a fault: from the moment the disruption ended (the kill or stop, the broker
  back, SIGCONT) until ingest has committed every event produced up to then; a restart and the
  group's rebalance are inside it (after a SIGKILL the group waits out the dead member's
  session, 60 s by default).
- At the end, once both consumer groups have no lag: events lost and double-counted (the 7-day
  given, received and post counts of every account, asked of any worker, against replay),
  alerts missing or unexpected as (rule, subject, severity), and alert ids published twice
  (at-least-once allows it; the id is the same).

Target (issue 12): 0 lost, 0 double-counted, 0 alerts missing over 20 faults. Writes
bench/results/chaos.json.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.table import Table

from bench.report import report
from service.core.decoding import EventDecoder, Rejection
from service.core.replay import Replayer
from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import LocalKafka
from service.settings import Settings
from tests.worker.harness import Worker, create_topics, read_all, wait_drained

DEFAULT_OUT = Path("bench/results/chaos.json")
PARTITIONS = 4
KINDS = ("sigkill", "sigterm", "broker", "add", "remove", "sigstop", "disk")
# Faust's default broker_session_timeout is 60 s; a pause past it makes the group drop the
# member, and the member find out when it wakes.
SESSION_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Options:
    faults: int = 20
    seed: int = 1
    rate: float = 300.0
    spacing_seconds: float = 20.0
    timeout_seconds: float = 600.0
    kinds: tuple[str, ...] = KINDS
    plan: tuple[str, ...] | None = None  # these faults in this order, instead of a random one
    # The RocksDB worker's tmpfs (the disk fault fills it). RocksDB needs room beyond the
    # state: 12 databases (3 tables x 4 partitions), each with its write-ahead log and the
    # files a crash leaves; 256 MiB ran out of room for the state itself after ~1,000 s.
    disk_mb: int = 1024


class Disk:
    """A tmpfs of a fixed size as a worker's data dir: full for a while, as a real volume gets."""

    def __init__(self, path: Path, megabytes: int) -> None:
        self.path, self.megabytes = path, megabytes

    @staticmethod
    def can_mount() -> bool:
        """Can this process mount a tmpfs? Root is not enough in a container without the
        capability, so try a tiny one."""
        if os.geteuid() != 0:
            return False
        with tempfile.TemporaryDirectory(prefix="reciprocity-mount-probe-") as probe:
            mounted = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
                capture_output=True, timeout=30, check=False,
            )  # fmt: skip
            if mounted.returncode != 0:
                return False
            subprocess.run(["umount", probe], capture_output=True, timeout=30, check=False)
        return True

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.megabytes}m", "tmpfs", str(self.path)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, timeout=30)

    def fill(self) -> int:
        """Write until the disk says it is full; returns the bytes written."""
        written = 0
        with open(self.path / "filler", "wb", buffering=0) as filler:
            for chunk in (1 << 20, 4096, 1):
                block = bytes(chunk)
                try:
                    while True:
                        written += filler.write(block) or 0
                except OSError:
                    continue  # ENOSPC: the tail with smaller blocks
        return written

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)


@dataclass
class Campaign:
    kafka: LocalKafka
    workdir: Path
    app_id: str
    topics: dict[str, str]
    workers: list[Worker] = field(default_factory=list)
    names: int = 0
    produced: int = 0  # events handed to the producer and acknowledged

    exits: list[int] = field(default_factory=list)  # exit codes of workers that ended themselves
    disk: Disk | None = None  # the RocksDB worker's volume, when the disk fault is in the plan
    disk_worker: Worker | None = None

    def revive(self) -> int:
        """Restart every worker that has exited on its own, as an orchestrator would; returns
        how many."""
        revived = 0
        for index, worker in enumerate(self.workers):
            if worker.process is not None and worker.process.poll() is not None:
                self.exits.append(worker.process.returncode)
                self.restart(index)
                revived += 1
        return revived

    def settle(self, timeout: float) -> None:
        """Until every worker is running and ready (restarting those that end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.revive()
            if all(worker.get("/readyz")[0] == 200 for worker in self.workers):
                return
            time.sleep(1)
        raise TimeoutError(f"workers not all ready in {timeout:.0f} s")

    def restart(self, index: int) -> None:
        """A new process in the place of a stopped one: the RocksDB worker keeps its data dir,
        the others start afresh (their state is in the changelogs). It is not waited for: one
        that exits again is restarted by `revive`, as an orchestrator does in a crash loop."""
        if self.workers[index] is self.disk_worker:
            self.workers[index].launch()
        else:
            self.workers[index] = self.new_worker(wait=False)

    def new_disk_worker(self, megabytes: int) -> Worker:
        """The RocksDB worker, its data dir on a tmpfs of `megabytes`."""
        name = "worker-disk"
        self.disk = Disk(self.workdir / f"{name}-data", megabytes)  # `Worker`'s data dir
        self.disk.mount()
        self.disk_worker = Worker(
            self.kafka.bootstrap_servers,
            self.app_id,
            self.topics,
            PARTITIONS,
            self.workdir,
            name,
            store="rocksdb://",
        )
        return self.disk_worker.start(timeout=300)

    def new_worker(self, wait: bool = True) -> Worker:
        self.names += 1
        worker = Worker(
            self.kafka.bootstrap_servers,
            self.app_id,
            self.topics,
            PARTITIONS,
            self.workdir,
            f"worker-{self.names}",
        )
        return worker.start(timeout=300) if wait else worker.launch()


class Producer(threading.Thread):
    """Produces the events at a fixed rate, keyed by actor; retries through broker outages
    (the producer is idempotent: a retried batch is not written twice)."""

    def __init__(
        self, bootstrap: str, topic: str, lines: list[bytes], keys: list[bytes], rate: float
    ):
        super().__init__(daemon=True)
        self._servers, self._topic = bootstrap, topic
        self._lines, self._keys, self._rate = lines, keys, rate
        self.acknowledged = 0  # the first this many lines are in the topic, in order
        self.error: BaseException | None = None
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Send no more; `acknowledged` is final once the thread has ended."""
        self._stopping.set()

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # reported by the campaign
            self.error = exc

    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=120_000,
            retry_backoff_ms=500,
        )
        await producer.start()
        try:
            started = time.monotonic()
            pending = []
            for index, (line, key) in enumerate(zip(self._lines, self._keys, strict=True)):
                if self._stopping.is_set():
                    break
                due = started + index / self._rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(await producer.send(self._topic, line, key=key))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    self.acknowledged += len(pending)
                    pending = []
            await asyncio.gather(*pending)
            self.acknowledged += len(pending)
            await producer.flush()
        finally:
            await producer.stop()


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(
            meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0
        )
    finally:
        await admin.close()


async def _end(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        return sum(ends.values())
    finally:
        await consumer.stop()


def wait_recovered(campaign: Campaign, timeout: float) -> float:
    """Seconds until ingest has committed every event produced up to now (workers that exit
    meanwhile are restarted)."""
    started = time.monotonic()
    bootstrap = campaign.kafka.bootstrap_servers
    target = asyncio.run(_end(bootstrap, campaign.topics["events"]))
    while time.monotonic() - started < timeout:
        try:
            done = asyncio.run(
                _committed(bootstrap, f"{campaign.app_id}-ingest", campaign.topics["events"])
            )
        except Exception:
            done = -1
        if done >= target:
            return time.monotonic() - started
        campaign.revive()
        time.sleep(0.5)
    return float("inf")


def inject(campaign: Campaign, kind: str, rng: Random) -> tuple[str, float]:
    """Do one fault. Returns what was done and when the disruption itself ended (the kill,
    the broker back, SIGCONT): recovery counts from there, restarts and rebalances included."""
    workers = campaign.workers
    if (kind == "add" and len(workers) >= 3) or (kind == "remove" and len(workers) <= 1):
        kind = "sigkill"
    if kind == "add":
        ended = time.monotonic()
        workers.append(campaign.new_worker())
        return f"added a worker ({len(workers)} now)", ended
    if kind == "broker":
        seconds = rng.uniform(10, 40)
        campaign.kafka.halt()
        time.sleep(seconds)
        campaign.kafka.resume()
        return f"broker stopped for {seconds:.0f} s", time.monotonic()
    if kind == "disk":
        assert campaign.disk is not None
        seconds = rng.uniform(10, 30)
        written = campaign.disk.fill()
        time.sleep(seconds)
        campaign.disk.free()
        return (
            f"filled the RocksDB worker's disk ({written / 2**20:.0f} MiB) for {seconds:.0f} s",
            time.monotonic(),
        )
    candidates = [
        i for i, w in enumerate(workers) if kind != "remove" or w is not campaign.disk_worker
    ]
    index = rng.choice(candidates)
    worker = workers[index]
    which = "the RocksDB worker" if worker is campaign.disk_worker else "a worker"
    assert worker.process is not None
    if kind == "sigkill":
        worker.kill()
        ended = time.monotonic()
        campaign.restart(index)
        return f"SIGKILL {which}, restarted", ended
    if kind == "sigterm":
        worker.stop()
        ended = time.monotonic()
        code = worker.process.returncode
        campaign.restart(index)
        return f"SIGTERM {which} (exit {code}), restarted", ended
    if kind == "remove":
        worker.stop()
        workers.pop(index)
        return f"removed a worker with SIGTERM ({len(workers)} left)", time.monotonic()
    if kind == "sigstop":
        seconds = SESSION_TIMEOUT_SECONDS + 5
        os.killpg(worker.process.pid, signal.SIGSTOP)
        time.sleep(seconds)
        os.killpg(worker.process.pid, signal.SIGCONT)
        return f"SIGSTOP {which} for {seconds:.0f} s, then SIGCONT", time.monotonic()
    raise ValueError(kind)


def run_campaign(options: Options, log: Any) -> dict[str, Any]:
    # The campaign's own producer and admin clients would log every refused connection while
    # the broker is down, thousands a second.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        return _campaign(options, log)
    finally:
        quiet.setLevel(level)


def _campaign(options: Options, log: Any) -> dict[str, Any]:
    # More than enough to go on producing through every fault (a SIGKILL's restart waits
    # ~60 s); the producer stops after the last, and what it sent is what replay gets.
    seconds = (options.spacing_seconds + 80) * (len(options.plan or ()) or options.faults + 1)
    traffic = generate_traffic(7, users=2_000, organic_events=int(options.rate * seconds))
    lines = [orjson.dumps(event) for event in traffic.events]
    keys = [str(event["actor_id"]).encode() for event in traffic.events]
    rng = Random(options.seed)
    plan = list(options.plan or [rng.choice(options.kinds) for _ in range(options.faults)])
    suffix = uuid.uuid4().hex[:6]
    topics = {
        "events": f"chaos-{suffix}.events",
        "alerts": f"chaos-{suffix}.alerts",
        "dead_letters": f"chaos-{suffix}.dlq",
    }
    with tempfile.TemporaryDirectory(prefix="reciprocity-chaos-") as tmp, LocalKafka() as kafka:
        create_topics(kafka.bootstrap_servers, topics.values(), PARTITIONS)
        campaign = Campaign(kafka, Path(tmp), f"chaos-{suffix}", topics)
        rows: list[dict[str, Any]] = []
        try:
            first = (
                campaign.new_disk_worker(options.disk_mb)
                if "disk" in plan
                else campaign.new_worker()
            )
            campaign.workers = [first, campaign.new_worker()]
            producer = Producer(
                kafka.bootstrap_servers, topics["events"], lines, keys, options.rate
            )
            producer.start()
            for number, kind in enumerate(plan, 1):
                time.sleep(options.spacing_seconds)
                campaign.revive()
                log(f"fault {number}/{len(plan)}: {kind} …")
                exits = len(campaign.exits)
                what, ended = inject(campaign, kind, rng)
                wait_recovered(campaign, options.timeout_seconds)
                recovered = time.monotonic() - ended
                exited = campaign.exits[exits:]
                if exited:
                    what += f"; {len(exited)} worker(s) exited (codes {exited}), restarted"
                rows.append(
                    {"fault": number, "kind": kind, "what": what,
                     "recovery_seconds": round(recovered, 1), "worker_exits": exited}
                )  # fmt: skip
                log(f"  {what}; recovered {recovered:.1f} s after")
            time.sleep(options.spacing_seconds)
            producer.stop()
            producer.join(timeout=options.timeout_seconds)
            lines = lines[: producer.acknowledged]
            if producer.error is not None:
                raise RuntimeError(f"producer failed: {producer.error!r}")
            log("draining …")
            # Every worker running and ready first: one that ended after the last fault (a
            # restart is not waited for) would otherwise sit out the drain and the comparison.
            campaign.settle(options.timeout_seconds)
            wait_drained(
                kafka.bootstrap_servers,
                campaign.app_id,
                topics["events"],
                timeout=options.timeout_seconds,
            )
            result = compare(kafka.bootstrap_servers, topics["alerts"], campaign.workers[0], lines)
        finally:
            for worker in campaign.workers:
                worker.stop()
            if campaign.disk is not None:
                campaign.disk.unmount()
    return {"options": options.__dict__, "events": len(lines), "faults": rows, **result}


def compare(bootstrap: str, alerts_topic: str, asked: Worker, lines: list[bytes]) -> dict[str, Any]:
    """What the worker `asked` serves and the alerts topic holds, against `replay` of `lines`
    (every one a valid event): events lost and double-counted in every account's 7-day counts,
    alerts missing and unexpected as (rule, subject, severity), alert ids published twice."""
    settings = Settings()
    decoder = EventDecoder(settings.input, lambda: 2**62)
    replayer = Replayer(settings.detection, lambda: 0)
    expected_alerts = []
    for line in lines:
        event = decoder.decode(line)
        assert not isinstance(event, Rejection)
        expected_alerts.extend(replayer.submit(event))
    expected_alerts.extend(replayer.flush())
    published = read_all(bootstrap, alerts_topic)
    ids: dict[str, int] = {}
    for alert in published:
        ids[alert["alert_id"]] = ids.get(alert["alert_id"], 0) + 1
    got = {(a["rule"], a["subject_id"], a["severity"]) for a in published}
    want = {(a.rule, a.subject_id, a.severity.value) for a in expected_alerts}
    lost = doubled = 0
    accounts = sorted(replayer.tables.actors.keys() | replayer.tables.targets.keys())
    for account in accounts:
        status, body = asked.get(f"/users/{account}/reciprocity")
        if status != 200:
            raise RuntimeError(f"/users/{account}/reciprocity answered {status}")
        served = orjson.loads(body)["windows"]["7d"]
        wanted = replayer.profile(account)["windows"]["7d"]
        for part in ("given", "received", "posts"):
            for key, value in (
                wanted[part].items() if isinstance(wanted[part], dict) else [("n", wanted[part])]
            ):
                have = served[part].get(key, 0) if isinstance(served[part], dict) else served[part]
                lost += max(0, value - have)
                doubled += max(0, have - value)
    return {
        "accounts": len(accounts),
        "events_lost": lost,
        "events_double_counted": doubled,
        "alerts_missing": sorted(map(list, want - got)),
        "alerts_unexpected": sorted(map(list, got - want)),
        "alert_ids_published_twice": sum(1 for count in ids.values() if count > 1),
        "alerts_expected": len(want),
    }


def print_tables(result: dict[str, Any], console: Console) -> None:
    table = Table(
        title=f"Fault-injection campaign: {result['events']:,} events, "
        f"{len(result['faults'])} faults"
    )
    for column in ("#", "fault", "what", "recovery s"):
        table.add_column(column)
    for row in result["faults"]:
        table.add_row(
            str(row["fault"]),
            row["kind"],
            row["what"],
            f"{row['recovery_seconds']:.1f}",
        )
    console.print(table)
    slowest = max((row["recovery_seconds"] for row in result["faults"]), default=0.0)
    console.print(
        f"accounts compared: {result['accounts']:,}; events lost: {result['events_lost']}; "
        f"double-counted: {result['events_double_counted']}; alerts missing: "
        f"{len(result['alerts_missing'])} of {result['alerts_expected']}; unexpected: "
        f"{len(result['alerts_unexpected'])}; alert ids published twice: "
        f"{result['alert_ids_published_twice']}; slowest recovery: {slowest:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n\n")[0]
    )
    defaults = Options()
    parser.add_argument("--faults", type=int, default=defaults.faults)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--rate", type=float, default=defaults.rate)
    parser.add_argument("--spacing", type=float, default=defaults.spacing_seconds)
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated fault kinds")
    parser.add_argument("--plan", default="", help="comma-separated faults, in this order")
    parser.add_argument("--disk-mb", type=int, default=defaults.disk_mb)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    kinds = tuple(kind for kind in args.kinds.split(",") if kind)
    plan = tuple(kind for kind in args.plan.split(",") if kind) or None
    unknown = (set(kinds) | set(plan or ())) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds: {', '.join(sorted(unknown))}")
    err = Console(stderr=True)
    if "disk" in (plan or kinds) and not Disk.can_mount():
        if plan:
            parser.error("the disk fault mounts a tmpfs, which needs root")
        kinds = tuple(kind for kind in kinds if kind != "disk")
        err.print("the disk fault is left out: mounting its tmpfs needs root")
    options = Options(
        faults=args.faults,
        seed=args.seed,
        rate=args.rate,
        spacing_seconds=args.spacing,
        kinds=kinds,
        plan=plan,
        disk_mb=args.disk_mb,
    )
    started = time.perf_counter()
    result = run_campaign(
        options,
        lambda message: err.print(
            f"{time.perf_counter() - started:7.1f} s  {message}", highlight=False
        ),
    )
    report(result, print_tables, args.out, width=150)


if __name__ == "__main__":
    main()
