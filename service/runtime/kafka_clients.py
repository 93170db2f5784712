"""aiokafka client options from the Kafka settings: one place for security."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from aiokafka.helpers import create_ssl_context

from service.settings import KafkaSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
        return context
    return None


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # settings validation guarantees it
        options.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value(),
        )
    return options


class OutputProducer:
    """The producer the runtime sends alerts, dead letters, stage messages and changelog records
    through. Idempotent, so that a retried batch is neither duplicated nor reordered: a
    changelog's order is what recovery restores. Created on `start()`, inside the event loop
    (aiokafka needs a running loop)."""

    def __init__(self, kafka: KafkaSettings, linger_ms: int, max_batch_bytes: int) -> None:
        self._options = {
            **client_options(kafka),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": linger_ms,
            "max_batch_size": max_batch_bytes,
            "max_request_size": 1_000_000,
        }
        self._producer: Any = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None
    ) -> Any:
        return await self._producer.send(topic, value, key=key, partition=partition)

    def create_batch(self) -> Any:
        return self._producer.create_batch()

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        return await self._producer.send_batch(batch, topic, partition=partition)


class BrokersUnreachable(Exception):
    """The cluster could not be reached (or refused us) at start; the message says why."""


# Errors that another attempt can fix: nothing listens yet, a broker restarts, a timeout.
_RETRIABLE = (ConnectionError, OSError, asyncio.TimeoutError, KafkaConnectionError,
              NodeNotReadyError, RequestTimedOutError, KafkaTimeoutError)  # fmt: skip


async def wait_for_brokers(
    kafka: KafkaSettings,
    timeout_s: float,
    log: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Until the cluster answers a metadata request, retrying what another attempt can fix
    with a growing pause (1 s, 2 s, 4 s … up to 15 s) and one line per attempt; raises
    `BrokersUnreachable` at the deadline, or at once for what retrying cannot fix (a refused
    password, an untrusted certificate)."""
    deadline = clock() + timeout_s
    # aiokafka logs each failed connection itself; the line per attempt below says it once.
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await _attempts(kafka, timeout_s, log, clock, deadline)
    finally:
        quiet.setLevel(level)


async def _attempts(
    kafka: KafkaSettings,
    timeout_s: float,
    log: Callable[[str], None],
    clock: Callable[[], float],
    deadline: float,
) -> None:
    pause = 1.0
    attempt = 0
    while True:
        attempt += 1
        admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except _RETRIABLE as exc:
            cause = _describe(exc)
            left = deadline - clock()
            if left <= 0:
                raise BrokersUnreachable(
                    f"Kafka at {kafka.bootstrap_servers} not reachable after {attempt} "
                    f"attempts in {timeout_s:g} s: {cause}"
                ) from None
            wait = min(pause, left)
            log(
                f"Kafka at {kafka.bootstrap_servers} not reachable (attempt {attempt}: "
                f"{cause}); retrying in {wait:.0f} s"
            )
            await asyncio.sleep(wait)
            pause = min(pause * 2, 15.0)
        except Exception as exc:
            raise BrokersUnreachable(
                f"Kafka at {kafka.bootstrap_servers} refused the connection: {_describe(exc)}"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await admin.close()


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"
