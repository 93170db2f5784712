"""`reciprocity demo`: a local broker, a worker, generated traffic, alerts as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rich.console import Console

from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import LocalKafka, free_port

SEVERITY_STYLE = {"low": "yellow", "medium": "dark_orange", "high": "bold red"}


@contextlib.contextmanager
def broker(bootstrap: str | None, console: Console) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    console.print("starting a local Apache Kafka broker (first run fetches it with Maven) …")
    with LocalKafka() as kafka:
        yield kafka.bootstrap_servers


@contextlib.contextmanager
def worker_process(
    bootstrap: str, app_id: str, port: int, workdir: Path, console: Console
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "RECIPROCITY_WORKER__APP_ID": app_id,
        "RECIPROCITY_WORKER__WEB_PORT": str(port),
        "RECIPROCITY_WORKER__DATA_DIR": str(workdir / "worker-data"),
        "RECIPROCITY_WORKER__LOG_LEVEL": "warning",
        "RECIPROCITY_TOPICS__EVENTS": f"{app_id}.events",
        "RECIPROCITY_TOPICS__ALERTS": f"{app_id}.alerts",
        "RECIPROCITY_TOPICS__DEAD_LETTERS": f"{app_id}.events.dlq",
    }
    log = open(workdir / "worker.log", "ab")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited; its log:\n{log.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the worker was not ready in {timeout:.0f} s; log: {log}")


@dataclass
class Tally:
    events_sent: int = 0
    alerts: Counter[str] = field(default_factory=Counter)  # by rule


async def stream(
    bootstrap: str,
    app_id: str,
    rate: float,
    seed: int,
    duration: float,
    console: Console,
    tally: Tally,
) -> None:
    events = generate_traffic(seed).events
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    consumer = AIOKafkaConsumer(
        f"{app_id}.alerts", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    deadline = time.monotonic() + duration

    async def produce() -> None:
        started = time.monotonic()
        for n, event in enumerate(events):
            # Pace by wall clock: `rate` events per second, whatever the event times say.
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            await producer.send(
                f"{app_id}.events", orjson.dumps(event), key=str(event["actor_id"]).encode()
            )
            tally.events_sent += 1
        await producer.flush()
        console.print(f"[dim]all {len(events):,} generated events sent[/dim]")

    async def show() -> None:
        async for message in consumer:
            alert = orjson.loads(message.value)
            tally.alerts[alert["rule"]] += 1
            style = SEVERITY_STYLE.get(alert["severity"], "")
            console.print(
                f"[{style}]{alert['severity']:>6}[/{style}] [bold]{alert['rule']}[/bold] "
                f"{alert['subject_id']}: {alert['summary']}",
                highlight=False,
            )

    tasks = [asyncio.create_task(produce()), asyncio.create_task(show())]
    try:
        await asyncio.wait_for(
            asyncio.gather(*tasks), timeout=max(0.0, deadline - time.monotonic())
        )
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            task.cancel()
        await producer.stop()
        await consumer.stop()


def run_demo(
    duration: float, rate: float, seed: int, bootstrap: str | None, port: int | None, workdir: Path
) -> None:
    # Off a terminal (a pipe, a CI log) lines are not wrapped at 80 columns.
    console = Console(soft_wrap=not sys.stdout.isatty())
    tally = Tally()
    app_id = f"reciprocity-demo-{uuid.uuid4().hex[:6]}"
    web_port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        broker(bootstrap, console) as servers,
        worker_process(servers, app_id, web_port, workdir, console) as process,
    ):
        console.print(f"Kafka at {servers}; starting the worker …")
        wait_ready(web_port, process, workdir / "worker.log", timeout=180)
        console.print(
            f"worker ready. metrics: http://127.0.0.1:{web_port}/metrics  "
            f"profiles: http://127.0.0.1:{web_port}/users/<id>/reciprocity\n"
            f"streaming generated traffic (seed {seed}) at {rate:,.0f} events/s into "
            f"{app_id}.events; alerts from {app_id}.alerts as they arrive. Ctrl-C stops."
        )
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(stream(servers, app_id, rate, seed, duration, console, tally))
        by_rule = ", ".join(f"{rule} {n}" for rule, n in sorted(tally.alerts.items())) or "none"
        console.print(
            f"{tally.events_sent:,} events sent; {sum(tally.alerts.values())} alerts "
            f"({by_rule}); the worker's log: {workdir / 'worker.log'}. Stopping the worker "
            "and the broker …"
        )
    console.print("stopped.")
