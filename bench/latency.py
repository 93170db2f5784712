"""Event→alert latency of a running worker: paced traffic in, alerts out, both on the wall clock.

Generated traffic (organic background with every injected scenario of `devtools.generate`, and
more small attacks built by its scenario builders, so that there are alerts enough for a p99)
is sent in its event-time order at a fixed rate, each event's `occurred_at` replaced by the wall
clock at the moment it is handed to the producer (epoch ms). A day of generated traffic then
passes in about a minute: the detectors see the same sequence of events, compressed in time.

Every rule puts the event time of the event that triggered an alert into the alert's
`window_end` (`at_ms` of the detector's intent; see `service/detectors/`). With event time =
production time, that is the moment the triggering event was produced, so

    latency = (wall clock when the alert was read) − window_end.

To be sure `window_end` names a produced event and not some other time, an alert is measured
only when an event produced at that millisecond has the alert's subject as its actor or target
(the subject of `follower_spike` is the target, of every other rule the actor); the others are
counted as unmatched.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from service.core.models import parse_timestamp_ms
from service.devtools.generate import (
    HOUR_MS,
    duplicate_reply_spam,
    finalize_events,
    generate_traffic,
    retweet_request_campaign,
)
from service.runtime.framing import (
    decode_event,
    decode_message,
    decode_stranger_request,
    decode_target_message,
)

# Production time (epoch ms) -> (actor, target) of every event produced in that millisecond.
Produced = dict[int, list[tuple[str, str | None]]]
# Pacing granularity: events due are sent in bursts this far apart.
TICK_SECONDS = 0.005
# One extra small attack per this many organic events (~150 alerts in a minute at 600/s).
EVENTS_PER_EXTRA_ATTACK = 400


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def paced_traffic(seed: int, users: int, organic_events: int) -> list[dict[str, Any]]:
    """A day of generated traffic with its scenarios, plus one small attack per
    `EVENTS_PER_EXTRA_ATTACK` organic events, spread evenly over the day (see `extra_attacks`).

    Dated so that the day ends now: the profile snapshots' account ages stay what the
    generator meant them to be next to the stamped times."""
    hours = 24.0
    start = datetime.now(UTC) - timedelta(hours=hours)
    traffic = generate_traffic(
        seed, users=users, organic_events=organic_events, hours=hours, start=start
    )
    accounts = sorted({str(event["actor_id"]) for event in traffic.events})
    start_ms = int(start.timestamp() * 1000)
    count = max(4, organic_events // EVENTS_PER_EXTRA_ATTACK)
    extra = extra_attacks(
        Random(f"{seed}/latency"), accounts, start_ms, int(hours * HOUR_MS), count
    )
    return list(
        heapq.merge(
            traffic.events, extra, key=lambda event: parse_timestamp_ms(event["occurred_at"])
        )
    )


def extra_attacks(
    rng: Random, accounts: Sequence[str], start_ms: int, span_ms: int, count: int
) -> list[dict[str, Any]]:
    """`count` small attacks by new accounts, alternately a stranger retweet-request campaign
    to 3 accounts (alerts low, then medium, from stage 3) and a duplicate reply to 5 (alert
    medium, from stage 1): the generator's dozen scenario alerts alone make a thin p99."""
    raw: list[dict[str, object]] = []
    for i in range(count):
        at = start_ms + (2 * i + 1) * span_ms // (2 * count)
        if i % 2 == 0:
            attack = retweet_request_campaign(rng, f"lat-rq-{i}", rng.sample(accounts, 3), at)
        else:
            attack = duplicate_reply_spam(rng, f"lat-dup-{i}", rng.sample(accounts, 5), at)
        raw.extend(attack.events)
    return finalize_events(raw, id_prefix="lat-", rng=rng)


async def produce_paced(
    producer: AIOKafkaProducer, topic: str, events: Sequence[dict[str, Any]], rate: float
) -> Produced:
    """Send `events` in order at `rate` per second, `occurred_at` stamped at hand-over."""
    produced: Produced = {}
    started = time.perf_counter()
    sent = 0
    total = len(events)
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            event = events[sent]
            at = wall_clock_ms()
            actor = str(event["actor_id"])
            target = event.get("target_id")
            value = orjson.dumps({**event, "occurred_at": at})
            await producer.send(topic, value, key=actor.encode())
            produced.setdefault(at, []).append((actor, None if target is None else str(target)))
            sent += 1
        await asyncio.sleep(TICK_SECONDS)
    await producer.flush()
    return produced


@dataclass
class AlertReader:
    """Reads an alerts topic from its start, noting the wall clock at which each alert came."""

    consumer: AIOKafkaConsumer
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            batches = await self.consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                for record in records:
                    self.received.append((now, orjson.loads(record.value)))


@dataclass(frozen=True)
class Latencies:
    milliseconds: list[float]  # one per matched alert
    unmatched: int  # alerts whose window_end names no produced event of their subject


def alert_latencies(
    received: Sequence[tuple[float, dict[str, Any]]], produced: Produced
) -> Latencies:
    measured: list[float] = []
    unmatched = 0
    for received_at, alert in received:
        end_ms = parse_timestamp_ms(alert["window_end"])
        subject = alert["subject_id"]
        if any(subject in parties for parties in produced.get(end_ms, ())):
            measured.append(received_at * 1000 - end_ms)
        else:
            unmatched += 1
    return Latencies(measured, unmatched)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank: a value that was actually observed."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class Measured:
    latencies: Latencies
    alerts_read: int
    # From the last event produced until the worker had processed everything: near the pace
    # interval when the worker keeps up, growing when it fell behind.
    drain_seconds: float


async def measure(
    bootstrap: str,
    events_topic: str,
    alerts_topic: str,
    events: Sequence[dict[str, Any]],
    rate: float,
    drained: Callable[[], float],
) -> Measured:
    """Produce `events` at `rate` while reading alerts; `drained()` (blocking, run in a thread)
    returns the seconds until the worker has processed everything."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(
        alerts_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    try:
        # The reader must hold its partitions before the first alert can exist.
        while not consumer.assignment():
            await asyncio.sleep(0.1)
        reader = AlertReader(consumer)
        stop = asyncio.Event()
        reading = asyncio.create_task(reader.run(stop))
        produced = await produce_paced(producer, events_topic, events, rate)
        drain_seconds = await asyncio.to_thread(drained)
        await asyncio.sleep(2.0)  # stage 3 and the alert's own trip follow the last stage
        stop.set()
        await reading
        return Measured(
            alert_latencies(reader.received, produced), len(reader.received), drain_seconds
        )
    finally:
        await consumer.stop()
        await producer.stop()


# Where an event's time goes, hop by hop: each stage message's CreateTime (stamped by the
# worker's producer when it sends it) minus the production time of every event it carries,
# which is the event's `occurred_at` in this traffic. A hop's figure is cumulative: "stage 2"
# is from production until the stage-2 message carrying the event was sent.
HOPS = (
    ("stage1", "stage1-by-actor", lambda item: decode_event(item).occurred_at),
    ("stage2", "stage2-by-target", lambda item: decode_target_message(item).occurred_at),
    ("stage3", "stage3-by-requester", lambda item: decode_stranger_request(item).occurred_at),
)


async def _records(bootstrap: str, topic: str) -> list[tuple[int, bytes]]:
    """(CreateTime, value) of every record of `topic`, from its start to its current end."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        ends = await consumer.end_offsets(list(consumer.assignment()))
        left = {tp for tp, end in ends.items() if end > 0}
        records: list[tuple[int, bytes]] = []
        while left:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                records.extend((record.timestamp, record.value or b"") for record in batch)
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return records
    finally:
        await consumer.stop()


def _quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "items": len(values),
        "p50_ms": percentile(values, 50) if values else None,
        "p99_ms": percentile(values, 99) if values else None,
    }


async def hop_delays(bootstrap: str, app_id: str, alerts_topic: str) -> dict[str, Any]:
    """Per hop, from an event's production until the message carrying it onwards was sent:
    p50 and p99 over every event (over every alert for the alert's own message), and how many
    stage messages carried them."""
    result: dict[str, Any] = {}
    for hop, suffix, occurred_at in HOPS:
        delays: list[float] = []
        records = await _records(bootstrap, f"{app_id}-{suffix}")
        for created, value in records:
            for _, items in decode_message(value):
                delays.extend(created - occurred_at(item) for item in items)
        result[hop] = {**_quantiles(delays), "messages": len(records)}
    alerts = await _records(bootstrap, alerts_topic)
    result["alert"] = {
        **_quantiles(
            [
                created - parse_timestamp_ms(orjson.loads(value)["window_end"])
                for created, value in alerts
            ]
        ),
        "messages": len(alerts),
    }
    return result
