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
from service.runtime.quota_stage import BreakerReport, QuotaHop
from service.runtime.sinks import Sink
from service.runtime.stage_wait import ActorStageClock, Stage1Input
from service.runtime.stages import (
    ActorStage,
    IngestStage,
    QuotaStage,
    RequesterStage,
    TargetStage,
)
from service.runtime.tables import (
    ACTOR_CODEC,
    QUOTA_CODEC,
    RELATION_CODEC,
    TARGET_CODEC,
    Changelog,
    OverlayTable,
    StateTables,
    Store,
)
from service.settings import Settings, rules_with_quota

TABLES = ("actors", "targets", "relations")
# The quota stage's table of rule states: only when a rule has a quota at the start.
QUOTA_TABLE = "quotas"


@dataclass(frozen=True)
class TopicNames:
    stage1: str
    stage2: str
    stage3: str
    quota: str


@dataclass(frozen=True)
class TopologySinks:
    stage1: Sink
    stage2: Sink
    stage3: Sink
    quota: Sink
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
    quota: QuotaStage | None = None  # None: no rule had a quota at the start

    @property
    def checkpointed(self) -> tuple[ActorStage | TargetStage | RequesterStage | QuotaStage, ...]:
        """The stages with an input topic of their own, in order (the quota stage last, if
        built)."""
        stages = (self.stage1, self.stage2, self.stage3)
        return stages if self.quota is None else (*stages, self.quota)

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
    # The quota stage exists when a rule has a quota at the start; a reload then changes the
    # quotas live, and a reload that brings the first quota is refused (`restart_only_fields`).
    quota_table: OverlayTable[object] | None = None
    if rules_with_quota(settings.detection):
        quota_table = OverlayTable(
            QUOTA_TABLE, stores[QUOTA_TABLE], changelogs[QUOTA_TABLE], QUOTA_CODEC
        )
    tables = StateTables(actors, targets, relations, quota_table)  # type: ignore[arg-type]
    commits = CommitQueue(tables, metrics)
    pipeline = Pipeline(settings.detection, tables, clocks.wall_ms)
    partitions = settings.topics.partitions
    keep = settings.input.dead_letter_keep_bytes
    quota_forwards = None
    if quota_table is not None:
        quota_forwards = Forwards(sinks.quota)
        commits.forwards.append(quota_forwards)

    def checkpoint(
        table: OverlayTable[object], topic: str, next_stage: Sink | None, number: int
    ) -> Checkpoint:
        """The checkpoint of the stage `number` (1-3; 4: the quota stage)."""
        forwards = None
        if next_stage is not None:
            forwards = Forwards(next_stage)
            commits.forwards.append(forwards)
        hop = None
        if quota_forwards is not None and number <= 3:
            hop = QuotaHop(pipeline, partitions, (number - 1) * partitions)
        return Checkpoint(
            tables,
            ProgressMarkers(table, topic),
            OutputSinks(
                sinks.alerts, sinks.shadow_alerts, sinks.dead_letters, forwards, quota_forwards
            ),
            commits,
            metrics,
            hop,
        )

    actor_checkpoint = checkpoint(actors, topics.stage1, sinks.stage2, 1)
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
    topology = Topology(
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
            checkpoint(targets, topics.stage2, sinks.stage3, 2),
            clock=clock,
            stop_waiting=stop_waiting,
            **common,
        ),
        # Stage 3 writes the actors table too; its markers name its own input topic.
        stage3=RequesterStage(pipeline, checkpoint(actors, topics.stage3, None, 3), **common),
        clock=clock,
        stage1_input=stage1_input,
        commits=commits,
    )
    if quota_table is not None:
        rule_quotas = RuleQuotas(pipeline.config.quotas, clocks.wall_ms, quota_table)  # type: ignore[arg-type]
        topology.quota = QuotaStage(
            pipeline,
            checkpoint(quota_table, topics.quota, None, 4),
            quotas=rule_quotas,
            report=BreakerReport(rule_quotas, metrics),
            **common,
        )
        topology.stage1.quota_clock = topology.quota.advance
    return topology
