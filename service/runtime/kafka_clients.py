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
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from service.settings import KafkaSettings


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        password = kafka.ssl_key_password
        context: ssl.SSLContext = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
            certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
            keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
            password=password.get_secret_value() if password is not None else None,
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
            # A batch waiting for a leader expires after this: a broker outage is retried
            # through, up to this long.
            "request_timeout_ms": int(kafka.delivery_timeout_seconds * 1000),
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
    # aiokafka logs each failed connection itself, and raises a generic error once all failed:
    # keep its lines for telling what no retry can fix, and say it once per attempt below.
    errors = _ConnectErrors()
    quiet = logging.getLogger("aiokafka")
    level, propagate = quiet.level, quiet.propagate
    quiet.setLevel(logging.ERROR)
    quiet.propagate = False
    quiet.addHandler(errors)
    try:
        await _attempts(kafka, timeout_s, log, clock, deadline, errors)
    finally:
        quiet.removeHandler(errors)
        quiet.setLevel(level)
        quiet.propagate = propagate


class _ConnectErrors(logging.Handler):
    """The exceptions aiokafka logs while it bootstraps (it raises only a generic one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(arg for arg in args if isinstance(arg, BaseException))

    def take(self) -> list[BaseException]:
        taken, self.errors = self.errors, []
        return taken


_REFUSED_LOGIN = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
# The same "closed at the first request" this many attempts in a row: a listener that wants
# what the client does not speak (TLS, SASL), not a broker that is down (that refuses).
_CLOSED_ATTEMPTS = 3


def refusal(kafka: KafkaSettings, errors: list[BaseException]) -> str | None:
    """What no retry can fix, in the connection errors of one attempt, said for an operator."""
    for error in errors:
        if isinstance(error, ssl.SSLCertVerificationError):
            return (
                f"TLS: the broker's certificate is not trusted ({error.verify_message}); "
                "RECIPROCITY_KAFKA__SSL_CAFILE must name the CA that signed it "
                "(certificate verify failed)"
            )
        if isinstance(error, ssl.SSLError):
            return (
                f"TLS handshake failed ({getattr(error, 'reason', None) or error}): is this a "
                "TLS listener, and "
                f"RECIPROCITY_KAFKA__SECURITY_PROTOCOL={kafka.security_protocol} right?"
            )
        if isinstance(error, _REFUSED_LOGIN):
            return (
                f"SASL authentication failed for user {kafka.sasl_username!r} with "
                f"{kafka.sasl_mechanism}: check RECIPROCITY_KAFKA__SASL_USERNAME and "
                f"RECIPROCITY_KAFKA__SASL_PASSWORD ({type(error).__name__})"
            )
    return None


def closed_every_time(kafka: KafkaSettings) -> str:
    """Why a listener closes every connection at its first request, said for an operator."""
    said = (
        f"Kafka at {kafka.bootstrap_servers} accepts connections but closes them at the first "
        "request, every time: the listener wants TLS or SASL that "
        f"RECIPROCITY_KAFKA__SECURITY_PROTOCOL={kafka.security_protocol} does not speak (or the "
        "port is not Kafka's)"
    )
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        # With TLS 1.3 a broker checks the client's certificate after the handshake: a refused
        # one shows as this close, not as a handshake error.
        shown = (
            f"the one in RECIPROCITY_KAFKA__SSL_CERTFILE ({kafka.ssl_certfile}) is not signed by "
            "a CA the broker trusts"
            if kafka.ssl_certfile is not None
            else "RECIPROCITY_KAFKA__SSL_CERTFILE is not set"
        )
        said += f"; or the TLS listener requires a client certificate (mTLS) and {shown}"
    return said


def _closed_at_first_request(errors: list[BaseException]) -> bool:
    return bool(errors) and all(
        isinstance(error, KafkaConnectionError) and "closed" in str(error) for error in errors
    )


async def _attempts(
    kafka: KafkaSettings,
    timeout_s: float,
    log: Callable[[str], None],
    clock: Callable[[], float],
    deadline: float,
    errors: _ConnectErrors,
) -> None:
    pause = 1.0
    attempt = 0
    closed = 0
    while True:
        attempt += 1
        admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except _RETRIABLE as exc:
            seen = errors.take()
            refused = refusal(kafka, seen)
            if refused is not None:
                raise BrokersUnreachable(
                    f"Kafka at {kafka.bootstrap_servers} refused the connection: {refused}"
                ) from None
            closed = closed + 1 if _closed_at_first_request(seen) else 0
            if closed >= _CLOSED_ATTEMPTS:
                raise BrokersUnreachable(closed_every_time(kafka)) from None
            cause = _describe(seen[-1]) if seen else _describe(exc)
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


def describe_failure(exc: BaseException) -> str:
    """A line for the log that names the cause: an authorization refused mid-run (an ACL
    removed, or a DENY added, while the worker ran) says what was refused and what to do."""
    refused = {TopicAuthorizationFailedError: "topic", GroupAuthorizationFailedError: "group"}
    kind = refused.get(type(exc))
    if kind is None:
        return repr(exc)
    name = ", ".join(map(str, exc.args)) or "?"
    return (
        f"not authorized: the cluster refused {kind} {name} (an ACL is missing, or one denies "
        "it); `reciprocity acls` prints the ACLs the worker needs"
    )


class AccessRefused(RuntimeError):
    """The cluster does not let this principal do what the worker needs."""


# Kafka's TOPIC_AUTHORIZATION_FAILED.
TOPIC_AUTHORIZATION_FAILED = 29


async def check_access(kafka: KafkaSettings, topics: list[str], groups: list[str]) -> None:
    """Before Faust starts: can this principal describe the topics it needs and its consumer
    groups? A missing ACL would otherwise surface late (a consumer group refused at join
    leaves Faust waiting without a word). Raises `AccessRefused` naming every refusal."""
    admin = AIOKafkaAdminClient(**client_options(kafka), request_timeout_ms=10_000)
    refused: list[str] = []
    try:
        await admin.start()
        for described in await admin.describe_topics(topics):
            if described["error_code"] == TOPIC_AUTHORIZATION_FAILED:
                refused.append(f"topic {described['topic']!r} (Describe)")
        for group in groups:
            try:
                await admin.find_coordinator(group)
            except GroupAuthorizationFailedError:
                refused.append(f"consumer group {group!r} (Describe, Read)")
            except KafkaError:
                pass  # authorized (that is checked first); the coordinator may not be up yet
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    if refused:
        who = f"user {kafka.sasl_username!r}" if kafka.sasl_username else "this client"
        raise AccessRefused(
            f"not authorized: {who} may not use {', '.join(refused)}; `reciprocity acls` "
            "prints the ACLs the worker needs"
        )
