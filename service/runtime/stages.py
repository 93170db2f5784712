"""The stages of an event as classes with one `handle` method each.

    events ─▶ IngestStage ─▶ ActorStage (key: actor) ─▶ TargetStage (key: target) ─▶ RequesterStage
              decode, route   actors, relations          targets, relations          actors
              └─(bad)─▶ dead letters       └──────────────────┬───────────────────────┘
                                                              ▼ alerts
                                   (of rules with a quota: ─▶ QuotaStage (key: rule) ─▶ alerts)

Ingest keeps no state: it hands a batch of input records to its sinks and says when they are
acknowledged (the caller commits input offsets after that). The other three, and the quota
stage, apply stage messages through a `Checkpoint`. An exception inside the core for one event
is contained: the event is dead-lettered with code `processing_error` and the stage goes on
with the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from service.core.dead_letter import PROCESSING_ERROR, dead_letter
from service.core.decoding import EventDecoder, Rejection
from service.core.models import EventType
from service.core.pipeline import Outcome, Pipeline, StageResult
from service.core.rule_quota import RuleQuotas
from service.runtime.checkpoint import Checkpoint, Outputs, Record, StageInput
from service.runtime.framing import (
    FROM_INGEST,
    StageOutbox,
    decode_alert,
    decode_event,
    decode_stranger_request,
    decode_target_message,
    encode_event,
    encode_stranger_request,
    encode_target_message,
    partition_for,
)
from service.runtime.metrics import Metrics
from service.runtime.quota_stage import BreakerReport
from service.runtime.sinks import Delivery, Sink
from service.runtime.stage_wait import ActorStageClock, Stage1Input, Wait

# The reason kept in a processing_error dead letter: enough to find the bug, not a traceback.
_REASON_CHARS = 300


class IngestStage:
    """Input records to stage-1 messages keyed by actor partition; bad ones to dead letters."""

    name = "ingest"

    def __init__(
        self,
        decoder: EventDecoder,
        partitions: int,
        stage1: Sink,
        dead_letters: Sink,
        metrics: Metrics,
        wall_clock_ms: Callable[[], int],
        dead_letter_keep_bytes: int,
    ) -> None:
        self._decoder = decoder
        self._partitions = partitions
        self._stage1 = stage1
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._wall_clock_ms = wall_clock_ms
        self._keep_bytes = dead_letter_keep_bytes

    async def handle(self, records: Sequence[Record]) -> Awaitable[list[Delivery]]:
        """Hand the batch's stage-1 messages and dead letters to their sinks, in order; the
        result resolves once all are acknowledged, to the stage-1 deliveries."""
        started = time.perf_counter()
        outbox = StageOutbox()
        decode = self._decoder.decode
        partitions = self._partitions
        rejected: list[Awaitable[Delivery]] = []
        for record in records:
            decoded = decode(record.value)
            if isinstance(decoded, Rejection):
                self._metrics.rejected.labels(decoded.code).inc()
                value = dead_letter(
                    decoded,
                    record.topic,
                    record.partition,
                    record.offset,
                    record.key,
                    record.value,
                    self._wall_clock_ms(),
                    self._keep_bytes,
                )
                rejected.append(await self._dead_letters.send(value, record.key))
                continue
            outbox.add(partition_for(decoded.actor_id, partitions), encode_event(decoded))
        sent = [
            await self._stage1.send(value, None, partition)
            for partition, value in outbox.messages(FROM_INGEST, FROM_INGEST)
        ]
        self._metrics.stage_events.labels(self.name).inc(len(records))
        self._metrics.stage_seconds.labels(self.name).observe(time.perf_counter() - started)
        return _acknowledged(sent, rejected)


async def _acknowledged(
    sent: list[Awaitable[Delivery]], rejected: list[Awaitable[Delivery]]
) -> list[Delivery]:
    deliveries = await asyncio.gather(*sent, *rejected)
    return deliveries[: len(sent)]


class _ContainedStage:
    """What the checkpointed stages share: counting results and containing failures."""

    name: str

    def __init__(
        self,
        pipeline: Pipeline,
        checkpoint: Checkpoint,
        *,
        partitions: int,
        metrics: Metrics,
        wall_clock_ms: Callable[[], int],
        dead_letter_keep_bytes: int,
    ) -> None:
        self.pipeline = pipeline
        self.checkpoint = checkpoint
        self.partitions = partitions
        self.metrics = metrics
        self._wall_clock_ms = wall_clock_ms
        self._keep_bytes = dead_letter_keep_bytes

    def next_offset(self, partition: int) -> int:
        """The input offset this stage needs next on `partition`."""
        return self.checkpoint.markers.next_offset(partition)

    async def ready(self, message: StageInput) -> bool:
        return True

    def apply(self, message: StageInput) -> Outputs:
        raise NotImplementedError

    def count(self, result: StageResult, outputs: Outputs) -> None:
        if result.outcome is Outcome.DUPLICATE:
            self.metrics.duplicates.labels(self.name).inc()
        elif result.outcome is Outcome.LATE:
            self.metrics.late.labels(self.name).inc()
        for rule in result.suppressed:
            self.metrics.suppressed.labels(rule).inc()
        outputs.alerts.extend(result.alerts)
        outputs.shadow_alerts.extend(result.shadow_alerts)

    def contain(
        self, exc: Exception, message: StageInput, item: dict[str, Any], outputs: Outputs
    ) -> None:
        """Dead-letter the item whose processing raised, with a short reason."""
        reason = f"{type(exc).__name__}: {exc}"[:_REASON_CHARS]
        self.metrics.rejected.labels(PROCESSING_ERROR).inc()
        outputs.dead_letters.append(
            (
                None,
                dead_letter(
                    Rejection(PROCESSING_ERROR, f"{self.name}: {reason}"),
                    message.topic,
                    message.partition,
                    message.offset,
                    None,
                    orjson.dumps(item, default=str),
                    self._wall_clock_ms(),
                    self._keep_bytes,
                ),
            )
        )

    async def handle(self, record: Record) -> Awaitable[Outputs | None] | None:
        """Apply the message; the result resolves once its effects are stored (see
        `Checkpoint`), and only then may its input offset be committed. None: the message
        is left unapplied (a rebalance or a stop interrupted the stage), and its offset must
        not be committed."""
        started = time.perf_counter()
        completed = await self.checkpoint.run(record, self)
        if completed is None:
            return None
        self.handled(record)
        self.metrics.stage_seconds.labels(self.name).observe(time.perf_counter() - started)
        return completed

    def handled(self, record: Record) -> None:
        return None


def _event_fields(item: list[Any]) -> dict[str, Any]:
    """An event item as the contract's event object (re-drivable to the events topic)."""
    names = ("event_id", "type", "actor_id", "target_id", "occurred_at", "post_id", "text")
    fields: dict[str, Any] = {name: value for name, value in zip(names, item, strict=False)}
    snapshot = item[7] if len(item) > 7 else None
    if isinstance(snapshot, list):
        fields["actor"] = dict(
            zip(
                ("created_at", "followers_count", "following_count", "posts_count"),
                snapshot,
                strict=False,
            )
        )
    return {key: value for key, value in fields.items() if value is not None}


class ActorStage(_ContainedStage):
    """Stage 1, keyed by the actor: outgoing counts, relations, churn, duplicate texts; forwards
    each event with facts about its actor to the target's partition."""

    name = "stage1"

    def __init__(
        self,
        pipeline: Pipeline,
        checkpoint: Checkpoint,
        *,
        clock: ActorStageClock,
        stage1_input: Stage1Input,
        wall_clock_s: Callable[[], float],
        **common: Any,
    ) -> None:
        super().__init__(pipeline, checkpoint, **common)
        self._clock = clock
        self._input = stage1_input
        self._wall_clock_s = wall_clock_s
        self._newest = -1
        self.newest_event_ms = -1  # the newest event time applied, for profiles served "now"
        # The quota stage's clock, if it runs: an open breaker closes as event time moves on.
        self.quota_clock: Callable[[int], None] | None = None

    def apply(self, message: StageInput) -> Outputs:
        pipeline, partitions = self.pipeline, self.partitions
        forwards = StageOutbox()
        outputs = Outputs(forwards=forwards)
        # Per-event metric updates cost more than the detectors (labels() lookups, one
        # histogram observation per event): count locally, publish once per message.
        processed_by_type: dict[str, int] = {}
        occurred: list[int] = []
        newest = -1
        for item in message.items:
            try:
                event = decode_event(item)
                result = pipeline.actor_stage(event, message.offset, message.applied_upto)
            except Exception as exc:
                self.contain(exc, message, _event_fields(item), outputs)
                continue
            if event.occurred_at > newest:
                newest = event.occurred_at
            self.count(result, outputs)
            if result.outcome is Outcome.PROCESSED or result.outcome is Outcome.SELF_TARGETED:
                kind = event.type.value
                processed_by_type[kind] = processed_by_type.get(kind, 0) + 1
                occurred.append(event.occurred_at)
            if result.forward is not None:
                forwards.add(
                    partition_for(result.forward.target_id, partitions),
                    encode_target_message(result.forward),
                )
        for kind, processed in processed_by_type.items():
            self.metrics.events.labels(kind).inc(processed)
        if occurred:
            self.metrics.observe_lags(self._wall_clock_s(), occurred)
        self.metrics.stage_events.labels(self.name).inc(len(message.items))
        self._newest = newest
        if newest > self.newest_event_ms:
            self.newest_event_ms = newest
        return outputs

    def handled(self, record: Record) -> None:
        self._input.handled()
        self._clock.advance(record.partition, self._newest)
        if self.quota_clock is not None and self._newest >= 0:
            self.quota_clock(self._newest)
        self._newest = -1


class TargetStage(_ContainedStage):
    """Stage 2, keyed by the target: incoming counts, follow-backs, follower spikes, and the
    stranger check, after stage 1 of its partition has caught up (`ActorStageClock`)."""

    name = "stage2"

    def __init__(
        self,
        pipeline: Pipeline,
        checkpoint: Checkpoint,
        *,
        clock: ActorStageClock,
        stop_waiting: Callable[[], bool],
        **common: Any,
    ) -> None:
        super().__init__(pipeline, checkpoint, **common)
        self._clock = clock
        self._stop_waiting = stop_waiting

    async def ready(self, message: StageInput) -> bool:
        # Only follows (follow-backs) and requests (the stranger check) read relations that
        # stage 1 writes; items are [event_id, hash, type, actor, target, at, asks, quality].
        newest = max(
            (item[5] for item in message.items if item[6] or item[2] == EventType.FOLLOW.value),
            default=-1,
        )
        waited = await self._clock.wait(message.partition, newest, self._stop_waiting)
        if waited is Wait.WAITED:
            self.metrics.stage2_waits.inc()
        elif waited is Wait.STOPPED:
            self.metrics.stage2_waits_stopped.inc()
        elif waited is Wait.STALLED:
            self.metrics.stage2_waits_skipped.inc()
        return waited is not Wait.STOPPED

    def apply(self, message: StageInput) -> Outputs:
        pipeline, partitions = self.pipeline, self.partitions
        requests = StageOutbox()
        outputs = Outputs(forwards=requests)
        for item in message.items:
            try:
                result = pipeline.target_stage(decode_target_message(item))
            except Exception as exc:
                names = ("event_id", "event_hash", "type", "actor_id", "target_id", "occurred_at")
                self.contain(exc, message, dict(zip(names, item, strict=False)), outputs)
                continue
            self.count(result, outputs)
            for request in result.stranger_requests:
                requests.add(
                    partition_for(request.requester_id, partitions),
                    encode_stranger_request(request),
                )
        self.metrics.stage_events.labels(self.name).inc(len(message.items))
        return outputs


class RequesterStage(_ContainedStage):
    """Stage 3, keyed by the requester: the tally of strangers asked for a share."""

    name = "stage3"

    def apply(self, message: StageInput) -> Outputs:
        pipeline = self.pipeline
        outputs = Outputs()
        for item in message.items:
            try:
                result = pipeline.requester_stage(decode_stranger_request(item))
            except Exception as exc:
                names = ("event_id", "event_hash", "requester_id", "stranger_id", "occurred_at")
                self.contain(exc, message, dict(zip(names, item, strict=False)), outputs)
                continue
            self.count(result, outputs)
        self.metrics.stage_events.labels(self.name).inc(len(message.items))
        return outputs


class QuotaStage(_ContainedStage):
    """The quota stage, keyed by rule: each rule's quota state in its table (`RuleQuotas` over
    it), the quotas read from the pipeline's current config per message; alerts within the
    quota to the alerts topic, those past it to the shadow topic, a breaker's trip alert to the
    alerts topic (`runtime.quota_stage`)."""

    name = "quota"

    def __init__(
        self,
        pipeline: Pipeline,
        checkpoint: Checkpoint,
        *,
        quotas: RuleQuotas,
        report: BreakerReport,
        **common: Any,
    ) -> None:
        super().__init__(pipeline, checkpoint, **common)
        self.quotas = quotas
        self.report = report

    def apply(self, message: StageInput) -> Outputs:
        outputs = Outputs()
        self.quotas.configure(self.pipeline.config.quotas)
        alerts = []
        for item in message.items:
            try:
                alerts.append(decode_alert(item))
            except Exception as exc:
                self.contain(exc, message, item if isinstance(item, dict) else {}, outputs)
        routed = self.quotas.route(alerts)
        outputs.alerts.extend(routed.alerts)
        outputs.shadow_alerts.extend(routed.diverted)
        self.report.routed(routed)
        self.metrics.stage_events.labels(self.name).inc(len(message.items))
        return outputs

    def advance(self, event_ms: int) -> None:
        """The newest event time stage 1 applied in this process: the breakers' clock."""
        self.report.advance(event_ms)
