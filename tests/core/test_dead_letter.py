"""A dead letter always fits one Kafka message, and says what it could not keep."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from service.core.dead_letter import MAX_MESSAGE_CHARS, dead_letter
from service.core.decoding import TOO_LARGE, Rejection
from service.core.models import DeadLetter
from service.settings import InputSettings

# aiokafka's and Faust's default max_request_size; a record batch adds ~100 bytes of framing.
PRODUCER_LIMIT = 1_000_000
FRAMING = 1_000
KEEP = InputSettings().dead_letter_keep_bytes
KEEP_MAX = InputSettings.model_fields["dead_letter_keep_bytes"].metadata[1].le


def record(key: bytes | None, value: bytes | None, keep: int = KEEP) -> dict[str, object]:
    raw = dead_letter(Rejection(TOO_LARGE, "too big"), "events", 3, 41, key, value, 0, keep)
    assert len(raw) + FRAMING <= PRODUCER_LIMIT
    parsed: dict[str, object] = orjson.loads(raw)
    DeadLetter.model_validate(parsed)
    return parsed


@pytest.mark.parametrize(
    ("size", "truncated"),
    [
        (64 * 1024, False),  # the largest message the contract accepts: kept whole
        (64 * 1024 + 1, True),
        (800_000, True),
        (1_000_000, True),
        (1024 * 1024, True),
    ],
)
def test_value_past_the_bound_keeps_a_prefix_its_size_and_hash(size: int, truncated: bool) -> None:
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    got = record(b"actor-1", value)
    kept = base64.b64decode(str(got["value_b64"]))
    assert got["truncated"] is truncated
    assert kept == value[: min(size, KEEP)]
    assert got["value_size"] == size
    assert got["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(str(got["key_b64"])) == b"actor-1"
    assert got["key_size"] == 7


@pytest.mark.parametrize("size", [64 * 1024, 800_000, 1_000_000])
def test_largest_setting_still_fits_with_a_huge_key_and_value(size: int) -> None:
    got = record(b"k" * size, b"v" * size, keep=KEEP_MAX)
    assert got["truncated"] is (size > KEEP_MAX)
    assert got["key_size"] == got["value_size"] == size


def test_missing_key_and_value_stay_null() -> None:
    got = record(None, None)
    assert [got[f] for f in ("key_b64", "key_size", "key_sha256")] == [None, None, None]
    assert [got[f] for f in ("value_b64", "value_size", "value_sha256")] == [None, None, None]
    assert got["truncated"] is False


def test_a_long_reason_is_cut() -> None:
    raw = dead_letter(Rejection("invalid_field", "é" * 50_000), "t", 0, 0, None, b"{}", 0, KEEP)
    message = str(orjson.loads(raw)["message"])
    assert len(message) == MAX_MESSAGE_CHARS
    assert message.endswith("…")
