"""Every topic the worker reads or writes exists, with its partitions, before it subscribes.

Faust declares internal topics while it subscribes, and its partition assignor then works from
metadata fetched before the broker reported them: a topic created in that gap gets no partitions
assigned until the next metadata refresh (five minutes by default), and its stage stalls.
Creating them first, and waiting until the broker lists every partition with a leader, closes
the gap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from mode.utils.times import want_seconds

from service.runtime.kafka_clients import TOPIC_AUTHORIZATION_FAILED, AccessRefused, client_options
from service.settings import KafkaSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    config: dict[str, str]


def topic_spec(topic: Any, default_replication: int) -> list[TopicSpec]:
    """The spec(s) of a Faust topic, configured the way Faust itself would create it."""
    config: dict[str, str] = {}
    policies = sorted(
        name
        for name, wanted in (("compact", topic.compacting), ("delete", topic.deleting))
        if wanted
    )
    if policies:
        config["cleanup.policy"] = ",".join(policies)
    if topic.retention:
        config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
    config.update({key: str(value) for key, value in (topic.config or {}).items()})
    return [
        TopicSpec(name, topic.partitions, topic.replicas or default_replication, config)
        for name in topic.topics
    ]


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**client_options(kafka))


async def ensure_topics(
    admin: AIOKafkaAdminClient, specs: list[TopicSpec], timeout: float = 60.0
) -> tuple[list[str], dict[str, int]]:
    """Create the missing topics, wait until all are served; returns the names created and
    every topic's partition count.

    A topic that already exists is left as it is, whatever its partition count.
    """
    await admin.start()
    try:
        present = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in present]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication,
                        topic_configs=spec.config,
                    )
                    for spec in missing
                ]
            )
            for name, code, *_ in response.topic_errors:
                if code == TOPIC_AUTHORIZATION_FAILED:
                    raise AccessRefused(
                        f"not authorized to create topic {name!r}, which does not exist yet: "
                        "`reciprocity acls` prints the ACLs the worker needs"
                    )
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create topic {name!r}: Kafka error code {code}")
        served = await _wait_served(admin, [spec.name for spec in specs], timeout)
        return [spec.name for spec in missing], served
    finally:
        await admin.close()


async def _wait_served(
    admin: AIOKafkaAdminClient, names: list[str], timeout: float
) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        described = await admin.describe_topics(names)
        waiting = [
            topic["topic"]
            for topic in described
            if topic["error_code"] != 0
            or not topic["partitions"]
            or any(partition["leader"] < 0 for partition in topic["partitions"])
        ]
        if not waiting:
            return {topic["topic"]: len(topic["partitions"]) for topic in described}
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not served after {timeout:.0f}s: {', '.join(waiting)}")
        await asyncio.sleep(0.1)
