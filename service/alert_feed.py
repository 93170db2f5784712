"""`reciprocity alerts`: the alerts topic, followed and shown one readable line per alert.

A client of the alerts topic like any moderation tool: a plain consumer with no group (it
commits nothing and moves no one's offsets), assigned every partition. Alerts are
de-duplicated on `alert_id` (at-least-once delivery may publish one twice), filtered, and
printed as a line (time, severity, rule, subject, summary) or passed through as JSON Lines.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from rich.text import Text

from service.core.models import Alert, Severity, ShadowAlert
from service.runtime.kafka_clients import client_options
from service.settings import Settings

SEVERITY_STYLE = {Severity.LOW: "cyan", Severity.MEDIUM: "yellow", Severity.HIGH: "bold red"}
# Alert ids remembered for de-duplication: a re-published alert comes within minutes.
REMEMBERED_IDS = 100_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class NoSuchTopic(RuntimeError):
    pass


def parse_duration(text: str) -> float:
    """Seconds in `30s`, `15m`, `2h` or `1d`."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 30s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class AlertFilter:
    rules: frozenset[str] = frozenset()  # empty: every rule
    subjects: frozenset[str] = frozenset()
    min_severity: Severity = Severity.LOW

    def admits(self, alert: Alert) -> bool:
        return (
            (not self.rules or alert.rule in self.rules)
            and (not self.subjects or alert.subject_id in self.subjects)
            and alert.severity.rank >= self.min_severity.rank
        )


class SeenIds:
    """The latest `REMEMBERED_IDS` alert ids."""

    def __init__(self, capacity: int = REMEMBERED_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, alert_id: str) -> bool:
        if alert_id in self._ids:
            return False
        self._ids[alert_id] = None
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)
        return True


def alert_line(alert: Alert) -> Text:
    """time, severity, rule, subject, summary; coloured by severity on a terminal."""
    line = Text()
    line.append(alert.window_end.replace("T", " ").removesuffix("Z"), style="dim")
    line.append("  ")
    line.append(f"{alert.severity.value.upper():<6}", style=SEVERITY_STYLE[alert.severity])
    if isinstance(alert, ShadowAlert):  # never to be acted on: say so on every line
        line.append("  SHADOW", style="italic")
        if alert.diverted_by is not None:  # an enforced rule's, past its quota
            line.append(f" (over {alert.diverted_by})", style="italic")
    line.append(f"  {alert.rule}  ")
    line.append(alert.subject_id, style="bold")
    line.append(f"  {alert.summary}")
    return line


def shown(
    values: Iterable[bytes | None],
    keep: AlertFilter,
    seen: SeenIds,
    model: type[Alert] = Alert,
) -> Iterable[tuple[bytes, Alert | None]]:
    """The messages to show, with their alert (None: not an alert, shown as it is). `model`:
    `ShadowAlert` on the shadow-alerts topic."""
    for value in values:
        if value is None:
            continue
        try:
            alert = model.model_validate_json(value)
        except ValidationError:
            yield value, None
            continue
        if seen.first_time(alert.alert_id) and keep.admits(alert):
            yield value, alert


async def follow(
    settings: Settings,
    keep: AlertFilter,
    start: str | float,  # "latest", "earliest", or a time in epoch seconds
    exit_at_end: bool,
    show: Callable[[bytes, Alert | None], None],
    shadow: bool = False,
) -> int:
    """Show the alerts topic's messages (with `shadow`, the shadow-alerts topic's) until
    interrupted (or, with `exit_at_end`, until the ends it had when it started); returns how
    many were shown."""
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="latest",
    )
    await consumer.start()
    try:
        topic = settings.topics.shadow_alerts if shadow else settings.topics.alerts
        variable = "RECIPROCITY_TOPICS__" + ("SHADOW_ALERTS" if shadow else "ALERTS")
        tps = [TopicPartition(topic, p) for p in await _partitions(settings, topic, variable)]
        model = ShadowAlert if shadow else Alert
        consumer.assign(tps)
        if start == "earliest":
            await consumer.seek_to_beginning(*tps)
        elif start == "latest":
            await consumer.seek_to_end(*tps)
        else:
            found = await consumer.offsets_for_times({tp: int(float(start) * 1000) for tp in tps})
            for tp in tps:
                at = found.get(tp)
                if at is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
        ends = await consumer.end_offsets(tps) if exit_at_end else {}
        seen, count = SeenIds(), 0
        while True:
            if exit_at_end and await _reached_all(consumer, ends):
                return count
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for value, alert in shown((r.value for r in records), keep, seen, model):
                    show(value, alert)
                    count += 1
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str, variable: str) -> list[int]:
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(p["partition"] for p in described.get("partitions", ()))
    if not partitions:
        raise NoSuchTopic(f"the topic {topic!r} does not exist ({variable})")
    return partitions


async def _reached_all(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def since_seconds(duration: str) -> float:
    return time.time() - parse_duration(duration)


def json_line(value: bytes) -> bytes:
    """The message as one JSON line (a value with line breaks is compacted)."""
    try:
        return orjson.dumps(orjson.loads(value))
    except orjson.JSONDecodeError:
        return value.replace(b"\n", b" ")
