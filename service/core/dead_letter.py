"""A rejected input message as a dead-letter record that always fits in one Kafka message.

The contract asks for the original key and value bytes. A message can be as large as the
broker accepts (about 1 MB by default), and base64 grows it by a third, so a whole copy of an
800 KB message no longer fits the producer's 1,000,000-byte request limit: the send fails and,
before this bound, took the ingest batch around it with it. Past `keep_bytes` a dead letter
therefore keeps a prefix of the bytes, and always their full length and SHA-256, so an operator
can still tell what was sent and match it against the producer's copy.
"""

from __future__ import annotations

import base64
import hashlib

import orjson

from service.core.decoding import Rejection
from service.core.models import DeadLetter, format_timestamp

# The human-readable reason is for people; a long one (an echoed input) is cut.
MAX_MESSAGE_CHARS = 1_000

# The code of an event the core raised on (a bug): the stage dead-letters it and goes on.
PROCESSING_ERROR = "processing_error"


def _kept(data: bytes | None, keep_bytes: int) -> tuple[str | None, int | None, str | None]:
    if data is None:
        return None, None, None
    return (
        base64.b64encode(data[:keep_bytes]).decode(),
        len(data),
        hashlib.sha256(data).hexdigest(),
    )


def dead_letter(
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    rejected_at_ms: int,
    keep_bytes: int,
) -> bytes:
    """The serialized dead letter: at most ~4/3 × 2 × `keep_bytes` plus 2 KB, whatever the
    input's size."""
    key_b64, key_size, key_sha256 = _kept(key, keep_bytes)
    value_b64, value_size, value_sha256 = _kept(value, keep_bytes)
    message = rejection.message
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    record = DeadLetter(
        code=rejection.code,
        message=message,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        key_b64=key_b64,
        key_size=key_size,
        key_sha256=key_sha256,
        value_b64=value_b64,
        value_size=value_size,
        value_sha256=value_sha256,
        truncated=(key_size or 0) > keep_bytes or (value_size or 0) > keep_bytes,
        rejected_at=format_timestamp(rejected_at_ms),
    )
    return orjson.dumps(record.model_dump(mode="json"))
