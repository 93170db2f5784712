"""The stages wired together over their tables and sinks: one graph, built the same way by the
worker (Kafka sinks, Faust's stores) and by tests (lists and dicts)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.core.decoding import EventDecoder
from service.core.pipeline import Pipeline
from service.core.rule_quota import RuleQuotas
from service.runtime.checkpoint import Checkpoint, CommitQueue, Forwards, OutputSinks
from service.runtime.metrics import Metrics
from service.runtime.progress import ProgressMarkers
from service.runtime.quota_gate import QuotaGate
from service.runtime.sinks import Sink
from service.runtime.stage_wait import ActorStageClock, Stage1Input
from service.runtime.stages import ActorStage, IngestStage, RequesterStage, TargetStage
from service.runtime.tables import (
    ACTOR_CODEC,
    RELATION_CODEC,
    TARGET_CODEC,
    Changelog,
    OverlayTable,
    StateTables,
    Store,
)
from service.settings import Settings

TABLES = ("actors", "targets", "relations")


@dataclass(frozen=True)
class TopicNames:
    stage1: str
    stage2: str
    stage3: str


@dataclass(frozen=True)
class TopologySinks:
    stage1: Sink
    stage2: Sink
    stage3: Sink
    alerts: Sink
    shadow_alerts: Sink
    dead_letters: Sink


@dataclass(frozen=True)
class Clocks:
    wall_ms: Callable[[], int]
    wall_s: Callable[[], float]
    monotonic_s: Callable[[], float]


@dataclass
class Topology:
    pipeline: Pipeline
    tables: StateTables
    ingest: IngestStage
    stage1: ActorStage
    stage2: TargetStage
    stage3: RequesterStage
    clock: ActorStageClock
    stage1_input: Stage1Input
    commits: CommitQueue
    quotas: QuotaGate | None = None  # None: no rule has a quota

    @property
    def checkpointed(self) -> tuple[ActorStage, TargetStage, RequesterStage]:
        return self.stage1, self.stage2, self.stage3

    async def flush(self) -> None:
        """Wait until every applied message is completed (before a stop)."""
        await self.commits.flush()

    def forget_applied(self) -> None:
        """After a rebalance: what this worker applied is stored, and others may have gone on."""
        self.clock.forget()
        for stage in self.checkpointed:
            stage.checkpoint.markers.forget()


def build_topology(
    settings: Settings,
    topics: TopicNames,
    stores: dict[str, Store],
    changelogs: dict[str, Changelog],
    sinks: TopologySinks,
    metrics: Metrics,
    clocks: Clocks,
    stage1_end: Callable[[int], int | None],
    ingest_caught_up: Callable[[int], bool],
    stop_waiting: Callable[[], bool],
) -> Topology:
    actors: OverlayTable[object] = OverlayTable(
        "actors", stores["actors"], changelogs["actors"], ACTOR_CODEC
    )
    targets: OverlayTable[object] = OverlayTable(
        "targets", stores["targets"], changelogs["targets"], TARGET_CODEC
    )
    relations: OverlayTable[object] = OverlayTable(
        "relations", stores["relations"], changelogs["relations"], RELATION_CODEC
    )
    tables = StateTables(actors, targets, relations)  # type: ignore[arg-type]
    commits = CommitQueue(tables, metrics)
    pipeline = Pipeline(settings.detection, tables, clocks.wall_ms)
    # One gate for the process's three stages: its quotas count what this process raises.
    rule_quotas = RuleQuotas(pipeline.config.quotas, clocks.wall_ms)
    quotas = QuotaGate(rule_quotas, metrics) if rule_quotas else None
    partitions = settings.topics.partitions
    keep = settings.input.dead_letter_keep_bytes

    def checkpoint(table: OverlayTable[object], topic: str, next_stage: Sink | None) -> Checkpoint:
        forwards = None
        if next_stage is not None:
            forwards = Forwards(next_stage)
            commits.forwards.append(forwards)
        return Checkpoint(
            tables,
            ProgressMarkers(table, topic),
            OutputSinks(sinks.alerts, sinks.shadow_alerts, sinks.dead_letters, forwards),
            commits,
            metrics,
            quotas,
        )

    actor_checkpoint = checkpoint(actors, topics.stage1, sinks.stage2)
    stage1_input = Stage1Input(
        stage1_end,
        ingest_caught_up,
        lambda partition: actor_checkpoint.markers.read(partition).applied_upto,
    )
    clock = ActorStageClock(
        settings.worker.stage2_max_wait_seconds, clocks.monotonic_s, stage1_input.caught_up
    )
    common: dict[str, Any] = {
        "partitions": partitions,
        "metrics": metrics,
        "wall_clock_ms": clocks.wall_ms,
        "dead_letter_keep_bytes": keep,
    }
    return Topology(
        pipeline=pipeline,
        tables=tables,
        ingest=IngestStage(
            EventDecoder(settings.input, clocks.wall_ms),
            partitions,
            sinks.stage1,
            sinks.dead_letters,
            metrics,
            clocks.wall_ms,
            keep,
        ),
        stage1=ActorStage(
            pipeline,
            actor_checkpoint,
            clock=clock,
            stage1_input=stage1_input,
            wall_clock_s=clocks.wall_s,
            **common,
        ),
        stage2=TargetStage(
            pipeline,
            checkpoint(targets, topics.stage2, sinks.stage3),
            clock=clock,
            stop_waiting=stop_waiting,
            **common,
        ),
        # Stage 3 writes the actors table too; its markers name its own input topic.
        stage3=RequesterStage(pipeline, checkpoint(actors, topics.stage3, None), **common),
        clock=clock,
        stage1_input=stage1_input,
        commits=commits,
        quotas=quotas,
    )
