"""The Kafka ACLs a worker needs, for a cluster that authorizes (`reciprocity acls` prints them
as `kafka-acls.sh` commands).

Least privilege, from what the worker does:
- ingest reads the events topics and commits offsets in the group `<app_id>-ingest` (it
  assigns its partitions itself: no membership, but offset commits and fetches need the group);
- Faust's consumer group `<app_id>` reads the stage topics, and Faust creates, reads and writes
  the topics named `<app_id>-…`: the stage topics (`-stage1-by-actor` to `-stage3-by-requester`,
  and `-quota-by-rule`, declared whatever the quotas), the table changelogs and its assignor's
  topic;
- one idempotent producer writes alerts, shadow alerts, dead letters, stage messages and
  changelogs. Since Kafka 3.0 an idempotent producer needs Write on a topic, not
  IdempotentWrite on the cluster;
- it creates no other topic when the events, alerts, shadow-alerts and dead-letter topics
  exist, and uses no transactions (no transactional id).

The Jetstream bridge (`reciprocity bridge jetstream`) is a producer of its own: an idempotent
producer writing the first events topic, which it describes at start to check that it exists
(it creates none). Give it its own principal.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from service.settings import Settings


@dataclass(frozen=True)
class Acl:
    resource: str  # "topic" or "group"
    name: str
    prefixed: bool
    operations: tuple[str, ...]
    why: str


def worker_acls(settings: Settings) -> list[Acl]:
    app_id = settings.worker.app_id
    topics = settings.topics
    acls = [
        Acl("topic", name, False, ("Read", "Describe"), "ingest reads the events")
        for name in topics.events
    ]
    acls += [
        Acl(
            "topic",
            f"{app_id}-",
            True,
            ("Create", "Read", "Write", "Describe", "DescribeConfigs"),
            "stage topics (quota-by-rule too), table changelogs and Faust's assignor topic",
        ),
        Acl("topic", topics.alerts, False, ("Write", "Describe"), "alerts"),
        Acl(
            "topic",
            topics.shadow_alerts,
            False,
            ("Write", "Describe"),
            "shadow alerts (rules in shadow mode)",
        ),
        Acl("topic", topics.dead_letters, False, ("Write", "Describe"), "dead letters"),
        Acl("group", app_id, False, ("Read", "Describe"), "Faust's consumer group (the stages)"),
        Acl("group", f"{app_id}-ingest", False, ("Read", "Describe"), "ingest's offsets"),
    ]
    return acls


def bridge_acls(settings: Settings) -> list[Acl]:
    return [
        Acl(
            "topic",
            settings.topics.events[0],
            False,
            ("Write", "Describe"),
            "the Jetstream bridge writes the events",
        )
    ]


ACLS_BY_ROLE = {"worker": worker_acls, "bridge": bridge_acls}


def kafka_acls_arguments(acl: Acl, principal: str) -> list[str]:
    """The arguments of `kafka-acls.sh --add` for one ACL (bootstrap and config not included)."""
    arguments = ["--add", "--allow-principal", principal]
    for operation in acl.operations:
        arguments += ["--operation", operation]
    if acl.prefixed:
        arguments += ["--resource-pattern-type", "prefixed"]
    arguments += [f"--{acl.resource}", acl.name]
    return arguments


def kafka_acls_commands(
    settings: Settings,
    principal: str,
    bootstrap: str,
    command_config: str | None,
    role: str = "worker",
) -> list[str]:
    prefix = ["kafka-acls.sh", "--bootstrap-server", bootstrap]
    if command_config is not None:
        prefix += ["--command-config", command_config]
    return [
        shlex.join([*prefix, *kafka_acls_arguments(acl, principal)])
        for acl in ACLS_BY_ROLE[role](settings)
    ]
