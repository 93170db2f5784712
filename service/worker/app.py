"""`create_app(settings)`: the Faust adapter. Topics, tables, agents that hand each message to a
stage of `service.runtime`, and the web views; the delivery protocol itself is the runtime's.

    events topic(s) ──ingest──▶ stage1 (key: actor) ──▶ stage2 (key: target) ──▶ stage3
         │                         actors, relations      targets, relations     actors
         └─(bad)─▶ dead letters        └──────────────┬─────────┴──────────────────┘
                                                      ▼
                                   alerts (enforced rules), shadow alerts (rules in shadow)
                                   of rules with a quota: ──▶ quota (key: rule) ──▶ alerts, shadow

Stage topics, tables and changelogs all have `topics.partitions` partitions and hash keys the
same way, so an account's actor, target and relation rows live in one partition number and
Faust assigns that number of every topic to one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from service.runtime.framing import encode_message
from service.runtime.kafka_clients import (
    OutputProducer,
    client_options,
    describe_failure,
    ssl_context,
)
from service.runtime.metrics import Metrics, MetricsPage, ScrapeTurns
from service.runtime.sinks import Delivery, KafkaChangelog, KafkaSink
from service.runtime.tables import Changelog, Store
from service.runtime.topology import (
    QUOTA_TABLE,
    TABLES,
    Clocks,
    TopicNames,
    Topology,
    TopologySinks,
    build_topology,
)
from service.settings import KafkaSettings, Settings, WorkerSettings, rules_with_quota
from service.worker.ingest import IngestService
from service.worker.reload import watch_detection_file
from service.worker.tables import FaustStore, faust_table, register_codecs
from service.worker.topics import TopicSpec, admin_client, ensure_topics, topic_spec
from service.worker.web import add_views
from service.worker.workarounds import (
    MissedMessages,
    Ownership,
    QuietMonitor,
    ReleasedMessages,
    TailGaps,
    UnfetchedPartitions,
    active_partitions,
    committed_offsets,
    fetch_positions,
    refetch,
    with_skipped,
)

# Stage messages a stage may have applied ahead of their completion (per agent).
MAX_IN_FLIGHT = 64
# How long a stop after a failure may take before the process just exits.
FAILED_STOP_SECONDS = 10.0
# A held stage partition out of Faust's fetching this long, the flow running, is put back
# (workarounds item 8); a full buffer drains well within it.
UNFETCHED_GRACE_SECONDS = 60.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def ingest_fetch_options(worker: WorkerSettings) -> dict[str, int]:
    """What holds ingest's fetches at the broker. A wait of 0: the first record answers a
    fetch, and an idle one is held for aiokafka's default 500 ms (a wait of 0 with nothing
    to read would poll in a loop)."""
    if worker.ingest_fetch_max_wait_ms == 0:
        return {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}
    return {
        "fetch_min_bytes": worker.ingest_fetch_min_bytes,
        "fetch_max_wait_ms": worker.ingest_fetch_max_wait_ms,
    }


def broker_credentials(kafka: KafkaSettings) -> Any:
    context = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # settings validation guarantees it
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class ReciprocityApp(faust.App):
    """Creates every topic it uses before its consumer subscribes (see worker.topics), and runs
    the producer the runtime sends through: started before the agents, stopped after them."""

    kafka_settings: KafkaSettings
    topic_specs: list[TopicSpec]
    partition_counts: dict[str, int]
    missed_readers: list[MissedMessages]
    output_producer: OutputProducer
    topology: Topology
    ingest: IngestService
    stop_timeout_seconds: float
    _failing: asyncio.Future[None] | None = None

    async def on_first_start(self) -> None:
        await super().on_first_start()
        admin = admin_client(self.kafka_settings)
        created, self.partition_counts = await ensure_topics(admin, self.topic_specs)
        if created:
            self.log.info("Created topics: %s", ", ".join(created))
        await self.output_producer.start()

    async def on_stop(self) -> None:
        # A stop waits for acknowledgements (stage messages, changelogs, ingest's commit);
        # with the brokers gone it would wait for minutes.
        asyncio.get_running_loop().call_later(self.stop_timeout_seconds, self._stop_overran)
        await super().on_stop()

    def _stop_overran(self) -> None:
        self.log.error(
            "stopping took over %g s (are the brokers reachable?): exiting now; nothing "
            "unacknowledged was committed, so the next start reads it again",
            self.stop_timeout_seconds,
        )
        os._exit(1)

    async def on_started_init_extra_services(self) -> None:
        await super().on_started_init_extra_services()
        # After table recovery, as Faust starts services of its own: stage 1 is ready for what
        # ingest sends. A runtime dependency stops before the app's own shutdown (the producer).
        await self.add_runtime_dependency(self.ingest)

    def fail_soon(self, exc: BaseException) -> None:
        """`fail`, from code that cannot wait for it."""
        self._failing = asyncio.ensure_future(self.fail(exc))

    async def fail(self, exc: BaseException) -> None:
        """A part of the worker died: stop the process with a non-zero exit code, so that the
        orchestrator restarts it (nothing unacknowledged was committed). A stop that cannot
        finish (it waits for messages the failure left unacknowledged) is cut short."""
        self.log.critical("stopping after a failure: %s", describe_failure(exc))
        asyncio.get_running_loop().call_later(FAILED_STOP_SECONDS, os._exit, 1)
        await self.crash(exc)

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for reader in self.missed_readers:
            await reader.close()
        await self.output_producer.stop()


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    register_codecs()
    worker = settings.worker
    topics = settings.topics
    partitions = topics.partitions
    app = ReciprocityApp(
        worker.app_id,
        broker=[f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings.kafka),
        store=worker.store,
        datadir=str(worker.data_dir),
        web_bind=worker.web_bind,
        web_port=worker.web_port,
        web_host=worker.web_host,
        canonical_url=f"http://{worker.web_host}:{worker.web_port}",
        topic_partitions=partitions,
        topic_replication_factor=topics.replication_factor,
        processing_guarantee="at_least_once",
        table_standby_replicas=worker.table_standby_replicas,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        web_enabled=True,
        # An agent that raises may leave half-applied state in memory: end the process (exit
        # code 1) so that it restarts from what was stored, instead of restarting the agent.
        agent_supervisor="mode.CrashingSupervisor",
        Monitor=QuietMonitor,
    )
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)

    def internal_topic(name: str, **options: Any) -> Any:
        return app.topic(
            name,
            partitions=partitions,
            internal=True,
            key_serializer="raw",
            value_serializer="raw",
            **options,
        )

    # Internal so that Faust creates input topics that do not exist yet (with our partition
    # count) instead of ignoring them until a restart; existing topics are left as they are.
    events_topic = internal_topic(*topics.events)
    stage_topics = [
        internal_topic(f"{worker.app_id}-stage1-by-actor"),
        internal_topic(f"{worker.app_id}-stage2-by-target"),
        internal_topic(f"{worker.app_id}-stage3-by-requester"),
    ]
    # Declared whatever the quotas, as the shadow topic: giving a rule its first quota is then
    # a restart with one variable changed. Consumed only when a rule has a quota.
    quota_topic = internal_topic(f"{worker.app_id}-quota-by-rule")
    with_quotas = bool(rules_with_quota(settings.detection))
    if with_quotas:
        stage_topics.append(quota_topic)
    stage_names = [topic.get_topic_name() for topic in stage_topics]
    quota_name = quota_topic.get_topic_name()
    alerts_topic = internal_topic(
        topics.alerts, retention=timedelta(days=topics.alerts_retention_days)
    )
    # Declared whatever the modes: switching a rule to shadow is then a restart with one
    # variable changed, and a subscriber can attach before the first shadow alert.
    shadow_alerts_topic = internal_topic(
        topics.shadow_alerts, retention=timedelta(days=topics.alerts_retention_days)
    )
    dead_letter_topic = internal_topic(
        topics.dead_letters, retention=timedelta(days=topics.dead_letters_retention_days)
    )
    tables = {
        name: faust_table(app, name, partitions)
        for name in (*TABLES, *([QUOTA_TABLE] if with_quotas else []))
    }
    app.kafka_settings = settings.kafka
    app.stop_timeout_seconds = worker.stop_timeout_seconds
    app.topic_specs = [
        spec
        for topic in (
            events_topic,
            *stage_topics[:3],
            quota_topic,
            alerts_topic,
            shadow_alerts_topic,
            dead_letter_topic,
            *(table.changelog_topic for table in tables.values()),
        )
        for spec in topic_spec(topic, topics.replication_factor)
    ]
    producer = OutputProducer(
        settings.kafka,
        int(worker.producer_linger_seconds * 1000),
        worker.producer_batch_bytes,
    )
    app.output_producer = producer

    def sink(name: str) -> KafkaSink:
        return KafkaSink(producer, name)

    def stage1_end(partition: int) -> int | None:
        try:
            end = app.consumer.highwater(TP(stage_names[0], partition))
        except (AssertionError, KeyError, RuntimeError):
            return None
        return None if end is None else int(end)

    def ingest_caught_up(partition: int) -> bool:
        return app.ingest.caught_up(partition)

    def pausing() -> bool:
        # Faust suspends the flow when partitions are revoked and on stop, and resumes it once
        # the new assignment is recovered and its offsets sought. Not `app.rebalancing`: it
        # stays true for a while after the flow resumes, and messages of the new assignment
        # would be given up with nothing after them to bring them back.
        return not app.flow_control.is_active()

    changelogs: dict[str, Changelog] = {
        name: KafkaChangelog(producer, table.changelog_topic.get_topic_name())
        for name, table in tables.items()
    }
    stores: dict[str, Store] = {name: FaustStore(table) for name, table in tables.items()}
    topology = build_topology(
        settings,
        TopicNames(stage_names[0], stage_names[1], stage_names[2], quota_name),
        stores,
        changelogs,
        TopologySinks(
            sink(stage_names[0]),
            sink(stage_names[1]),
            sink(stage_names[2]),
            sink(quota_name),
            sink(topics.alerts),
            sink(topics.shadow_alerts),
            sink(topics.dead_letters),
        ),
        metrics,
        Clocks(wall_clock_ms, time.time, time.monotonic),
        stage1_end=stage1_end,
        ingest_caught_up=ingest_caught_up,
        stop_waiting=pausing,
    )
    app.topology = topology
    topology.commits.on_failure = app.fail_soon
    watch_detection_file(app, settings, topology.pipeline, metrics)
    metrics.track_sizes(
        {"actors": lambda: len(stores["actors"]), "targets": lambda: len(stores["targets"])}
    )

    @app.on_partitions_assigned.connect
    async def forget_applied(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # A partition that moved away and back may have been processed elsewhere meanwhile.
        topology.forget_applied()

    @app.on_partitions_revoked.connect
    async def ingest_lets_go(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Before the new owners start: what ingest handed over is committed.
        await app.ingest.follow(set())

    @app.on_partitions_assigned.connect
    async def ingest_follows(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        assigned = app.consumer.assignment()
        await app.ingest.follow({tp.partition for tp in assigned if tp.topic == stage_names[0]})

    ownership = Ownership(app)
    readers = {
        stage.name: MissedMessages(client_options(settings.kafka))
        for stage in topology.checkpointed
    }
    app.missed_readers = list(readers.values())

    def read_back(stage: str, source: Any, expected: int, owned: Callable[[], bool]) -> Any:
        if 0 <= expected < source.offset:
            app.log.warning(
                "%s: %s[%d] skipped offsets %d..%d; reading them back",
                stage,
                source.topic,
                source.partition,
                expected,
                source.offset - 1,
            )
        return with_skipped(
            readers[stage],
            source,
            expected,
            owned,
            lambda count: metrics.missed_messages.labels(stage).inc(count),
        )

    def stage1_done(delivery: Delivery) -> bool:
        """Has stage 1 handled this stage-1 message, if it runs here? (Backpressure.)"""
        tp = TP(stage_names[0], delivery.partition)
        if tp not in app.consumer.assignment():
            return True
        return topology.stage1_input.handled_upto(delivery.partition) >= delivery.offset

    def note_acknowledged(deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            topology.stage1_input.sent(delivery.partition, delivery.offset)

    async def fail(exc: BaseException) -> None:
        await app.fail(exc)

    app.ingest = IngestService(
        {**client_options(settings.kafka), **ingest_fetch_options(worker)},
        f"{worker.app_id}-ingest",
        lambda: {name: app.partition_counts[name] for name in topics.events},
        partitions,
        topology.ingest,
        max_records=worker.batch_max_events,
        max_batches_ahead=worker.ingest_batches_ahead,
        stage1_done=stage1_done,
        on_acknowledged=note_acknowledged,
        on_fatal=fail,
        loop=app.loop,
        beacon=app.beacon,
    )
    topology.stage1_input.on_handled = app.ingest.stage1_progressed

    def stage_agent(stage: Any) -> Callable[[Any], Awaitable[None]]:
        """A stage's agent: each input message (after any the consumer skipped before it) to
        the stage. Acks are manual: a message is acked once its effects are stored, not when
        the next one is taken, so that Faust never commits past an unfinished message while
        the stage applies the next ones meanwhile."""

        async def agent(stream: Any) -> None:
            manual = stream.noack()
            in_flight: deque[asyncio.Future[Any]] = deque()
            released = ReleasedMessages(app.consumer)
            async for stage_event in manual.events():
                source = stage_event.message
                completed: Awaitable[Any] | None = None
                async with contextlib.aclosing(
                    read_back(
                        stage.name,
                        source,
                        stage.next_offset(source.partition),
                        ownership.while_assigned(),
                    )
                ) as messages:
                    async for message in messages:
                        completed = await stage.handle(message)
                        if completed is None:
                            break  # left unapplied: so must everything after it be
                if completed is None:
                    # Ownership was lost during a read-back, or a rebalance or a stop
                    # interrupted stage 2's wait: not applied, so not acked yet.
                    app.log.info(
                        "%s: %s[%d]@%d left unapplied (a rebalance or a stop); read again",
                        stage.name,
                        source.topic,
                        source.partition,
                        source.offset,
                    )
                    released.add(stage_event)
                    continue
                done = asyncio.ensure_future(completed)
                # Once this one is stored, so is everything before it on its partition.
                earlier = released.before(source.partition, source.offset)
                done.add_done_callback(functools.partial(ack, events=[*earlier, stage_event]))
                in_flight.append(done)
                while in_flight and in_flight[0].done():
                    in_flight.popleft()
                # Bounded: the overlay holds what is applied and not yet stored.
                while len(in_flight) > MAX_IN_FLIGHT:
                    await in_flight.popleft()

        return agent

    def ack(completed: asyncio.Future[Any], events: list[Any]) -> None:
        if not completed.cancelled() and completed.exception() is None:
            for event in events:
                event.ack()

    for topic, stage, agent_name in zip(
        stage_topics,
        topology.checkpointed,
        # The quota stage's agent only if it is built.
        ("stage1_by_actor", "stage2_by_target", "stage3_by_requester", "quota_by_rule")[
            : len(stage_topics)
        ],
        strict=True,
    ):
        app.agent(topic, name=agent_name)(stage_agent(stage))

    # Seen fetched past for a whole check interval; a stage-2 message may also wait for stage 1
    # up to its bound before the stage takes the next.
    tail_gaps = TailGaps(
        lambda tp: (
            worker.tail_gap_check_seconds
            + (worker.stage2_max_wait_seconds if tp.topic == stage_names[1] else 0.0)
        )
    )
    stage_by_topic = dict(zip(stage_names, topology.checkpointed, strict=True))
    wake_up_sinks = {name: sink(name) for name in stage_names}

    def stage_needs(tp: Any) -> int | None:
        stage = stage_by_topic.get(tp.topic)
        if stage is None or tp not in app.consumer.assignment():
            return None
        return int(stage.next_offset(tp.partition))

    unfetched = UnfetchedPartitions(UNFETCHED_GRACE_SECONDS)

    @app.timer(worker.tail_gap_check_seconds)  # type: ignore[untyped-decorator]
    async def wake_stages_at_tail_gaps() -> None:
        if app.rebalancing or not app.flow_control.is_active():
            unfetched.reset()
            return
        consumer = app.consumer
        held = {tp for tp in consumer.assignment() if tp.topic in wake_up_sinks}
        for tp in unfetched.to_refetch(held, active_partitions(consumer), time.monotonic()):
            app.log.warning(
                "%s[%d]: not fetched for %g s while the flow ran (faust-streaming #629); "
                "fetching it again",
                tp.topic,
                tp.partition,
                UNFETCHED_GRACE_SECONDS,
            )
            refetch(consumer, [tp])
            metrics.partitions_refetched.inc()
        committed = committed_offsets(consumer)
        for tp in tail_gaps.to_wake(
            committed, stage_needs, fetch_positions(consumer, held), time.monotonic()
        ):
            app.log.warning(
                "%s[%d]: Faust %s past offset %d, which the stage has not applied; waking it "
                "up to read the range back",
                tp.topic,
                tp.partition,
                "committed" if committed.get(tp, -1) > (stage_needs(tp) or 0) else "fetched",
                stage_needs(tp),
            )
            metrics.tail_gaps_woken.labels(stage_by_topic[tp.topic].name).inc()
            await (await wake_up_sinks[tp.topic].send(encode_message([]), None, tp.partition))

    @app.task  # type: ignore[untyped-decorator]
    async def declare_output_topics() -> None:
        # Nothing consumes these here; declare them so subscribers can attach before the first
        # alert or dead letter exists.
        await alerts_topic.maybe_declare()
        await shadow_alerts_topic.maybe_declare()
        await dead_letter_topic.maybe_declare()

    def stage_lags() -> dict[str, int]:
        lags = {stage.name: 0 for stage in topology.checkpointed}
        names = dict(zip(stage_names, lags, strict=True))
        consumer = app.consumer
        committed = committed_offsets(consumer)
        for tp in consumer.assignment():
            stage = names.get(tp.topic)
            if stage is None or tp not in committed:
                continue
            try:
                end = consumer.highwater(tp)
            except (AssertionError, KeyError, RuntimeError):
                continue
            if end is not None:
                lags[stage] += max(0, int(end) - committed[tp])
        return lags

    metrics.consumers.lag = lambda: {"ingest": app.ingest.lag(), **stage_lags()}
    metrics.consumers.rebalances = lambda: {
        "stages": int(app.rebalancing_count),
        "ingest": app.ingest.rebalances,
    }
    metrics.consumers.rebalancing = lambda: bool(app.rebalancing)
    add_views(
        app,
        topology,
        tables["actors"],
        MetricsPage(registry, worker.metrics_render_seconds, time.monotonic),
        ScrapeTurns(worker.metrics_scrapes_per_second, time.monotonic),
        worker.api_token.get_secret_value() if worker.api_token is not None else None,
    )
    app.reciprocity_metrics = metrics  # type: ignore[attr-defined]
    return app
