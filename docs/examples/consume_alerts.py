"""A downstream service reading Reciprocity's alerts with the package's typed model.

    python docs/examples/consume_alerts.py BOOTSTRAP TOPIC [--group GROUP] [--once]

`Alert` is the pydantic model the service publishes (`schemas/alert.schema.json` is generated
from it), so a consumer gets validated, typed fields. Alerts come at least once: keep what you
do per `alert_id` idempotent.
"""

from __future__ import annotations

import argparse
import asyncio

from aiokafka import AIOKafkaConsumer

from service.core.models import Alert, Severity


async def consume(bootstrap: str, topic: str, group: str, once: bool) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=2000)
            if once and not batches:
                return
            for records in batches.values():
                for record in records:
                    alert = Alert.model_validate_json(record.value or b"")
                    if alert.severity is Severity.HIGH:
                        print(f"page: {alert.rule} {alert.subject_id}: {alert.summary}")
                    else:
                        print(f"queue: {alert.rule} {alert.subject_id} ({alert.alert_id})")
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("--group", default="moderation-queue")
    parser.add_argument("--once", action="store_true", help="stop when nothing new comes")
    args = parser.parse_args()
    asyncio.run(consume(args.bootstrap, args.topic, args.group, args.once))
