"""`create_app(settings)`: the Faust app. Agents decode, call the core, write state, send.

    events topic(s) ──ingest──▶ stage1 (key: actor) ──▶ stage2 (key: target) ──▶ stage3
         │                         actors, relations      targets, relations     actors
         └─(bad)─▶ dead letters        └──────────────┬─────────┴──────────────────┘
                                                      ▼
                                                   alerts

Stage topics, tables and changelogs all have `topics.partitions` partitions and hash keys the
same way, so an account's actor, target and relation rows live in one partition number and
Faust assigns that number of every topic to one worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import faust
import orjson
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from service.core.dead_letter import dead_letter
from service.core.decoding import EventDecoder, Rejection
from service.core.models import Alert, EventType
from service.core.pipeline import Outcome, Pipeline, StageResult
from service.core.reciprocity import profile
from service.runtime.kafka_clients import client_options, ssl_context
from service.runtime.metrics import Metrics
from service.settings import KafkaSettings, Settings
from service.worker.missed import MissedMessages
from service.worker.progress import (
    ActorStageClock,
    Batches,
    StageProgress,
    read_message,
)
from service.worker.tables import (
    ACTOR_CODEC,
    KEY_CODEC,
    RELATION_CODEC,
    TARGET_CODEC,
    Commit,
    StageTables,
    register_codecs,
)
from service.worker.topics import TopicSpec, admin_client, ensure_topics, topic_spec
from service.worker.wire import (
    decode_event,
    decode_stranger_request,
    decode_target_message,
    encode_event,
    encode_stranger_request,
    encode_target_message,
    partition_for,
)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


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
    """Creates every topic it uses before its consumer subscribes (see worker.topics)."""

    kafka_settings: KafkaSettings
    topic_specs: list[TopicSpec]
    missed_readers: list[MissedMessages]

    async def on_first_start(self) -> None:
        await super().on_first_start()
        admin = admin_client(self.kafka_settings)
        created = await ensure_topics(admin, self.topic_specs)
        if created:
            self.log.info("Created topics: %s", ", ".join(created))

    async def on_stop(self) -> None:
        for reader in self.missed_readers:
            await reader.close()
        await super().on_stop()


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
        consumer_auto_offset_reset="earliest",
        producer_max_batch_size=worker.producer_batch_bytes,
        producer_linger=worker.producer_linger_seconds,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        web_enabled=True,
    )
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    setup_prometheus_sensors(app, pattern="/metrics", registry=registry, name_prefix="faust")

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
    events_topic = app.topic(
        *topics.events,
        partitions=partitions,
        internal=True,
        key_serializer="raw",
        value_serializer="raw",
    )
    stage1_topic = internal_topic(f"{worker.app_id}-stage1-by-actor")
    stage2_topic = internal_topic(f"{worker.app_id}-stage2-by-target")
    stage3_topic = internal_topic(f"{worker.app_id}-stage3-by-requester")
    alerts_topic = internal_topic(
        topics.alerts, retention=timedelta(days=topics.alerts_retention_days)
    )
    dead_letter_topic = internal_topic(
        topics.dead_letters, retention=timedelta(days=topics.dead_letters_retention_days)
    )

    def table(name: str, codec: str) -> Any:
        created: Any = app.Table(name, partitions=partitions)
        # Faust derives serializers from key_type/value_type only; ours are codecs. The store
        # is created lazily, but registering the table already built its changelog topic with
        # JSON serializers, and recovery decodes with those: build it again with ours.
        created.key_serializer = KEY_CODEC
        created.value_serializer = codec
        created._changelog_topic = created._new_changelog_topic()
        return created

    actors = table("actors", ACTOR_CODEC)
    targets = table("targets", TARGET_CODEC)
    relations = table("relations", RELATION_CODEC)
    state = StageTables(actors, targets, relations)
    app.kafka_settings = settings.kafka
    app.topic_specs = [
        spec
        for topic in (
            events_topic,
            stage1_topic,
            stage2_topic,
            stage3_topic,
            alerts_topic,
            dead_letter_topic,
            actors.changelog_topic,
            targets.changelog_topic,
            relations.changelog_topic,
        )
        for spec in topic_spec(topic, topics.replication_factor)
    ]
    pipeline = Pipeline(settings.detection, state, wall_clock_ms)
    decoder = EventDecoder(settings.input, wall_clock_ms)
    metrics.track_sizes({"actors": lambda: len(actors), "targets": lambda: len(targets)})
    newest_event_ms = [-1]

    stage_names = ("ingest", "stage1", "stage2", "stage3")
    missed = {stage: MissedMessages(client_options(settings.kafka)) for stage in stage_names}
    app.missed_readers = list(missed.values())

    async def with_missed(stage: str, source: Any, expected: int) -> AsyncIterator[Any]:
        """The input messages to apply for `source`: first those the consumer skipped
        between `expected` (the next offset this stage needs; -1: unknown) and `source`,
        read back (see worker.missed), then `source` itself.

        A stage with a stored marker stops once a rebalance starts: whoever owns the
        partition next reads the same gap from the marker. Ingest has no marker, so it reads
        the whole gap regardless; if the partition moved meanwhile, the copies it sends are
        duplicates, which stage 1 absorbs."""
        if 0 <= expected < source.offset:
            generation = app.consumer_generation_id

            def owned() -> bool:
                if stage == "ingest":
                    return not app.should_stop
                return app.consumer_generation_id == generation and not app.rebalancing

            if not owned():
                return
            app.log.warning(
                "%s: %s[%d] skipped offsets %d..%d; reading them back",
                stage,
                source.topic,
                source.partition,
                expected,
                source.offset - 1,
            )
            async for records in missed[stage].read(
                source.topic, source.partition, expected, source.offset, owned
            ):
                metrics.missed_messages.labels(stage).inc(len(records))
                for record in records:
                    yield record
            if not owned():
                return
        yield source

    def pausing() -> bool:
        return bool(app.rebalancing) or not app.flow_control.is_active()

    # Ingest keeps no state of its own: the next offset it needs is known while it holds the
    # partition (this generation or, kept through a rebalance, the one before).
    ingested: dict[Any, tuple[int, int]] = {}
    # How far each hop into stage 1 has got on this worker, for stage 2's wait: per events
    # partition the last offset whose stage-1 messages are acknowledged; per stage-1 partition
    # the last offset this worker's ingest got acknowledged there, and the last one stage 1
    # handled. Producers key events by actor, so events partition p feeds stage-1 partition p.
    ingest_delivered: dict[Any, int] = {}
    sent_to_stage1: dict[int, int] = {}
    stage1_handled: dict[int, int] = {}
    stage1_name = stage1_topic.get_topic_name()
    events_names = list(topics.events)

    def consumed_upto(tp: TP, offset: int) -> bool:
        """Has this worker's consumer of `tp` handled everything the partition held when last
        fetched? Unknown (not assigned, nothing fetched yet) is no."""
        try:
            end = app.consumer.highwater(tp)
        except (AssertionError, KeyError, RuntimeError):
            return False
        return end is not None and offset + 1 >= end

    def stage1_caught_up(partition: int) -> bool:
        handled = stage1_handled.get(partition, -1)
        if handled < sent_to_stage1.get(partition, -1):
            return False
        if not consumed_upto(TP(stage1_name, partition), handled):
            return False
        for name in events_names:
            tp = TP(name, partition)
            if tp in app.consumer.assignment() and not consumed_upto(
                tp, ingest_delivered.get(tp, -1)
            ):
                return False
        return True

    actor_clock = ActorStageClock(worker.stage2_max_wait_seconds, time.monotonic, stage1_caught_up)
    clock_generation = [-1]

    def stage_clock() -> ActorStageClock:
        generation = int(app.consumer_generation_id)
        if generation != clock_generation[0]:
            clock_generation[0] = generation
            actor_clock.forget()
        return actor_clock

    async def note_delivered(futures: list[Any], taken: dict[Any, int]) -> None:
        for metadata in await asyncio.gather(*futures):
            if metadata.offset > sent_to_stage1.get(metadata.partition, -1):
                sent_to_stage1[metadata.partition] = metadata.offset
        for tp, offset in taken.items():
            ingest_delivered[tp] = offset

    def count(stage: str, result: StageResult, alerts: list[Alert]) -> None:
        if result.outcome is Outcome.DUPLICATE:
            metrics.duplicates.labels(stage).inc()
        elif result.outcome is Outcome.LATE:
            metrics.late.labels(stage).inc()
        for rule in result.suppressed:
            metrics.suppressed.labels(rule).inc()
        alerts.extend(result.alerts)

    async def publish(alerts: list[Alert]) -> list[Any]:
        pending = []
        for alert in alerts:
            metrics.alerts.labels(alert.rule, alert.severity.value).inc()
            pending.append(
                await alerts_topic.send(
                    key=alert.subject_id.encode(),
                    value=orjson.dumps(alert.model_dump(mode="json")),
                )
            )
        return pending

    async def send_batches(
        topic: Any, batches: Batches, origin_partition: int, origin_offset: int
    ) -> list[Any]:
        return [
            await topic.send(value=value, partition=partition)
            for partition, value in batches.messages(origin_partition, origin_offset)
        ]

    async def deliver(
        stage: str, partition: int, commit: Commit, *sending: Awaitable[list[Any]]
    ) -> None:
        """Outputs first, then the state that produced them, then (the caller) the progress
        marker. A crash between outputs and state re-applies the message, which sends the same
        outputs again (same origin, same alert ids: absorbed downstream). The other order
        would lose them: the stored state would mark the message's events as seen, and a
        stage that finds only duplicates sends nothing."""
        try:
            outputs = [future for send in sending for future in await send]
            if outputs:
                await asyncio.gather(*outputs)
        except BaseException:
            state.abandon(commit)
            raise
        sent = await state.send(commit, partition)
        records = [await asyncio.gather(*table) for table in sent]
        metrics.state_writes.labels(stage).inc(sum(len(table) for table in records))
        state.delivered(partition, records)

    async def ingest_one(message: Any, tp: Any, generation: int, out: Batches) -> None:
        ingested[tp] = (message.offset, generation)
        decoded = decoder.decode(message.value)
        if isinstance(decoded, Rejection):
            metrics.rejected.labels(decoded.code).inc()
            await dead_letter_topic.send(
                key=message.key,
                value=dead_letter(
                    decoded,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.key,
                    message.value,
                    wall_clock_ms(),
                    settings.input.dead_letter_keep_bytes,
                ),
            )
            return
        out.add(partition_for(decoded.actor_id, partitions), encode_event(decoded))

    @app.agent(events_topic, name="ingest")
    async def ingest(stream: Any) -> None:
        # No table writes here, so batching with take_events is safe (faust #497).
        async for batch in stream.take_events(worker.batch_max_events, worker.batch_max_seconds):
            started = time.perf_counter()
            out = Batches()
            generation = int(app.consumer_generation_id)
            for event in batch:
                message = event.message
                tp = message.tp
                last = ingested.get(tp)
                expected = last[0] + 1 if last is not None and last[1] >= generation - 1 else -1
                if expected < 0 or message.offset == expected:
                    await ingest_one(message, tp, generation, out)
                elif message.offset > expected:
                    async for record in with_missed("ingest", message, expected):
                        await ingest_one(record, tp, generation, out)
            sent = await send_batches(stage1_topic, out, -1, -1)
            batch_tps = {event.message.tp for event in batch}
            taken = {tp: ingested[tp][0] for tp in batch_tps if tp in ingested}
            # Not awaited here: acknowledgements only feed stage 2's wait.
            delivered = asyncio.ensure_future(note_delivered(sent, taken))
            delivered.add_done_callback(log_failure)
            metrics.stage_events.labels("ingest").inc(len(batch))
            metrics.stage_seconds.labels("ingest").observe(time.perf_counter() - started)

    def log_failure(task: asyncio.Future[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            app.log.error("stage-1 sends failed: %r", task.exception())

    def replayed(stage: str, progress: StageProgress, header: list[int], offset: int) -> bool:
        """Are this message's effects all stored already (a replay after a restart)? Then the
        marker moves past it, and the stage applies nothing."""
        if not progress.already_applied(header):
            return False
        metrics.replayed_messages.labels(stage).inc()
        if offset > progress.applied_upto:
            progress.record_skipped()
        return True

    def next_offset(table: Any, source: Any) -> int:
        return StageProgress(table, source.topic, source.partition, source.offset).applied_upto + 1

    async def apply_actor_message(source: Any) -> None:
        header, items = read_message(source.value)
        progress = StageProgress(actors, source.topic, source.partition, source.offset)
        if replayed("stage1", progress, header, source.offset):
            stage1_handled[source.partition] = source.offset
            stage_clock().advance(source.partition, -1)
            return
        started = time.perf_counter()
        forwards = Batches()
        alerts: list[Alert] = []
        # Per-event metric updates cost more than the detectors (labels() lookups, one
        # histogram observation per event): count locally, publish once per message.
        processed_by_type: dict[str, int] = {}
        occurred: list[int] = []
        newest = -1
        for item in items:
            event = decode_event(item)
            if event.occurred_at > newest:
                newest = event.occurred_at
            result = pipeline.actor_stage(event, source.offset, progress.applied_upto)
            count("stage1", result, alerts)
            if result.outcome is Outcome.PROCESSED or result.outcome is Outcome.SELF_TARGETED:
                kind = event.type.value
                processed_by_type[kind] = processed_by_type.get(kind, 0) + 1
                occurred.append(event.occurred_at)
            if result.forward is not None:
                forwards.add(
                    partition_for(result.forward.target_id, partitions),
                    encode_target_message(result.forward),
                )
        await deliver(
            "stage1",
            source.partition,
            state.commit(),
            publish(alerts),
            send_batches(stage2_topic, forwards, source.partition, source.offset),
        )
        progress.record(header)
        stage1_handled[source.partition] = source.offset
        stage_clock().advance(source.partition, newest)
        for kind, processed in processed_by_type.items():
            metrics.events.labels(kind).inc(processed)
        if occurred:
            metrics.observe_lags(time.time(), occurred)
            newest_event_ms[0] = max(newest_event_ms[0], max(occurred))
        metrics.stage_events.labels("stage1").inc(len(items))
        metrics.stage_seconds.labels("stage1").observe(time.perf_counter() - started)

    async def apply_target_message(source: Any) -> None:
        header, items = read_message(source.value)
        progress = StageProgress(targets, source.topic, source.partition, source.offset)
        if replayed("stage2", progress, header, source.offset):
            return
        messages = [decode_target_message(item) for item in items]
        # Only follows (follow-backs) and requests (the stranger check) read relations
        # that stage 1 writes.
        newest = max(
            (
                message.occurred_at
                for message in messages
                if message.asks_for_share or message.type is EventType.FOLLOW
            ),
            default=-1,
        )
        if await stage_clock().wait(source.partition, newest, pausing):
            metrics.stage2_waits.inc()
        started = time.perf_counter()
        requests = Batches()
        alerts: list[Alert] = []
        for message in messages:
            result = pipeline.target_stage(message)
            count("stage2", result, alerts)
            for request in result.stranger_requests:
                requests.add(
                    partition_for(request.requester_id, partitions),
                    encode_stranger_request(request),
                )
        await deliver(
            "stage2",
            source.partition,
            state.commit(),
            publish(alerts),
            send_batches(stage3_topic, requests, source.partition, source.offset),
        )
        progress.record(header)
        metrics.stage_events.labels("stage2").inc(len(items))
        metrics.stage_seconds.labels("stage2").observe(time.perf_counter() - started)

    async def apply_request_message(source: Any) -> None:
        header, items = read_message(source.value)
        # Stage 3 writes the actors table too; its marker key names its own topic.
        progress = StageProgress(actors, source.topic, source.partition, source.offset)
        if replayed("stage3", progress, header, source.offset):
            return
        started = time.perf_counter()
        alerts: list[Alert] = []
        for item in items:
            count("stage3", pipeline.requester_stage(decode_stranger_request(item)), alerts)
        await deliver("stage3", source.partition, state.commit(), publish(alerts))
        progress.record(header)
        metrics.stage_events.labels("stage3").inc(len(items))
        metrics.stage_seconds.labels("stage3").observe(time.perf_counter() - started)

    def stage_agent(
        stage: str, table: Any, apply: Callable[[Any], Awaitable[None]]
    ) -> Callable[[Any], Awaitable[None]]:
        """A stage's agent: each input message, after any the consumer skipped before it."""

        async def agent(stream: Any) -> None:
            async for stage_event in stream.events():
                source = stage_event.message
                async for message in with_missed(stage, source, next_offset(table, source)):
                    await apply(message)

        return agent

    app.agent(stage1_topic, name="stage1_by_actor")(
        stage_agent("stage1", actors, apply_actor_message)
    )
    app.agent(stage2_topic, name="stage2_by_target")(
        stage_agent("stage2", targets, apply_target_message)
    )
    app.agent(stage3_topic, name="stage3_by_requester")(
        stage_agent("stage3", actors, apply_request_message)
    )

    @app.task  # type: ignore[untyped-decorator]
    async def declare_output_topics() -> None:
        # Nothing consumes these here; declare them so subscribers can attach before the first
        # alert or dead letter exists.
        await alerts_topic.maybe_declare()
        await dead_letter_topic.maybe_declare()

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        body = {"ready": recovered and not app.rebalancing, "recovered": recovered}
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/users/{user_id}/reciprocity")
    @app.table_route(table=actors, match_info="user_id")
    async def reciprocity(web: View, request: Request, user_id: str) -> Response:
        actor = actors.get(user_id)
        target = targets.get(user_id)
        now_ms = max(
            newest_event_ms[0],
            actor.watermark if actor is not None else -1,
            target.watermark if target is not None else -1,
        )
        return web.json(profile(pipeline.config, user_id, actor, target, now_ms))

    app.reciprocity_metrics = metrics  # type: ignore[attr-defined]
    return app
