"""Bytes to a validated `Event`, or a `Rejection` with a stable code. Never raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from service.core.models import Event
from service.settings import InputSettings


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str
    message: str


# Rejection codes: part of the contract (dead-letter `code`, metric label). Never rename.
TOO_LARGE = "message_too_large"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
INVALID_TYPE = "invalid_event_type"
INVALID_ID = "invalid_id"
INVALID_TIMESTAMP = "invalid_timestamp"
IN_FUTURE = "event_in_future"
TARGET_MISMATCH = "target_mismatch"
INVALID_FIELD = "invalid_field"

REJECTION_CODES = (
    TOO_LARGE,
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    INVALID_TYPE,
    INVALID_ID,
    INVALID_TIMESTAMP,
    IN_FUTURE,
    TARGET_MISMATCH,
    INVALID_FIELD,
)

_ID_FIELDS = frozenset({"event_id", "actor_id", "target_id", "post_id"})
_TIME_FIELDS = frozenset({"occurred_at", "created_at"})


def _code_for(error: ValidationError) -> Rejection:
    first = error.errors(include_url=False)[0]
    loc = [str(part) for part in first["loc"]]
    field = ".".join(loc) or "event"
    kind = first["type"]
    text = f"{field}: {first['msg']}"
    if kind == "missing":
        return Rejection(MISSING_FIELD, text)
    if not loc:
        return Rejection(TARGET_MISMATCH if "target_id" in first["msg"] else INVALID_FIELD, text)
    if loc[0] == "type":
        return Rejection(INVALID_TYPE, text)
    if loc[-1] in _TIME_FIELDS:
        return Rejection(INVALID_TIMESTAMP, text)
    if loc[0] in _ID_FIELDS:
        return Rejection(INVALID_ID, text)
    return Rejection(INVALID_FIELD, text)


class EventDecoder:
    """Turns message bytes into events; everything wrong with them becomes a `Rejection`."""

    def __init__(self, settings: InputSettings, now_ms: Callable[[], int]) -> None:
        self._max_bytes = settings.max_message_bytes
        self._max_future_ms = settings.max_future_seconds * 1000
        self._now_ms = now_ms

    def decode(self, value: bytes | None) -> Event | Rejection:
        if value is None:
            return Rejection(NOT_AN_OBJECT, "empty message (tombstone)")
        if len(value) > self._max_bytes:
            return Rejection(TOO_LARGE, f"{len(value)} bytes exceeds {self._max_bytes}")
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            # orjson refuses invalid UTF-8 too; look only now (not for every message) so that
            # the code says which.
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as bad:
                return Rejection(INVALID_UTF8, f"invalid UTF-8 at byte {bad.start}")
            return Rejection(INVALID_JSON, str(exc))
        if not isinstance(parsed, dict):
            return Rejection(NOT_AN_OBJECT, f"expected a JSON object, got {type(parsed).__name__}")
        try:
            event = Event.model_validate(parsed)
        except ValidationError as exc:
            return _code_for(exc)
        except Exception as exc:  # the codec must never raise: a raise kills the agent
            return Rejection(INVALID_FIELD, f"unexpected validation failure: {exc!r}")
        if event.occurred_at - self._now_ms() > self._max_future_ms:
            return Rejection(
                IN_FUTURE,
                f"occurred_at is more than {self._max_future_ms // 1000} s in the future",
            )
        return event
