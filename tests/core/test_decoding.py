"""Every contract violation maps to a stable code; valid events come through normalized."""

from __future__ import annotations

import orjson
import pytest

from service.core.decoding import REJECTION_CODES, EventDecoder, Rejection
from service.core.models import Event, EventType
from service.settings import InputSettings

NOW = 1_767_571_200_000  # 2026-01-05T00:00:00Z


def decoder() -> EventDecoder:
    return EventDecoder(InputSettings(), lambda: NOW)


def event(**fields: object) -> bytes:
    base: dict[str, object] = {
        "event_id": "e1",
        "type": "follow",
        "actor_id": "alice",
        "target_id": "bob",
        "occurred_at": "2026-01-04T23:59:00Z",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


INVALID = [
    ("too_large", b'{"x": "' + b"a" * 70_000 + b'"}', "message_too_large"),
    ("bad_utf8", b'{"event_id": "\xff"}', "invalid_utf8"),
    ("not_json", b"follow alice bob", "invalid_json"),
    ("truncated_json", b'{"event_id": "e1"', "invalid_json"),
    ("array", b"[1, 2]", "not_an_object"),
    ("string", b'"hello"', "not_an_object"),
    ("no_event_id", event(event_id=...), "missing_field"),
    ("no_type", event(type=...), "missing_field"),
    ("no_actor", event(actor_id=...), "missing_field"),
    ("no_time", event(occurred_at=...), "missing_field"),
    ("unknown_type", event(type="like"), "invalid_event_type"),
    ("empty_event_id", event(event_id=""), "invalid_id"),
    ("long_event_id", event(event_id="e" * 129), "invalid_id"),
    ("actor_with_space", event(actor_id="al ice"), "invalid_id"),
    ("actor_with_control", event(actor_id="al\u0007ice"), "invalid_id"),
    ("actor_not_string", event(actor_id=42), "invalid_id"),
    ("target_too_long", event(target_id="b" * 129), "invalid_id"),
    ("long_post_id", event(post_id="p" * 129), "invalid_id"),
    ("naive_timestamp", event(occurred_at="2026-01-04T23:59:00"), "invalid_timestamp"),
    ("date_only", event(occurred_at="2026-01-04"), "invalid_timestamp"),
    ("garbage_timestamp", event(occurred_at="yesterday"), "invalid_timestamp"),
    ("float_timestamp", event(occurred_at=1.5e12), "invalid_timestamp"),
    ("bool_timestamp", event(occurred_at=True), "invalid_timestamp"),
    ("negative_epoch", event(occurred_at=-5), "invalid_timestamp"),
    ("bad_created_at", event(actor={"created_at": "soon"}), "invalid_timestamp"),
    ("future", event(occurred_at=NOW + 301_000), "event_in_future"),
    ("follow_without_target", event(target_id=...), "target_mismatch"),
    ("post_with_target", event(type="post"), "target_mismatch"),
    ("text_too_long", event(type="reply", text="x" * 10_001), "invalid_field"),
    ("negative_count", event(actor={"followers_count": -1}), "invalid_field"),
    ("count_as_string", event(actor={"posts_count": "3"}), "invalid_field"),
    ("schema_version_zero", event(schema_version=0), "invalid_field"),
    ("actor_not_object", event(actor="alice"), "invalid_field"),
]


@pytest.mark.parametrize(
    ("raw", "code"), [(r, c) for _, r, c in INVALID], ids=[name for name, _, _ in INVALID]
)
def test_invalid_input_maps_to_its_code(raw: bytes, code: str) -> None:
    result = decoder().decode(raw)
    assert isinstance(result, Rejection), result
    assert result.code == code, result.message
    assert result.code in REJECTION_CODES
    assert result.message


def test_every_code_is_exercised() -> None:
    assert {code for _, _, code in INVALID} == set(REJECTION_CODES)


def test_tombstone_is_rejected() -> None:
    result = decoder().decode(None)
    assert isinstance(result, Rejection) and result.code == "not_an_object"


VALID = [
    ("rfc3339_z", event(), 1_767_571_140_000),
    ("rfc3339_offset", event(occurred_at="2026-01-05T00:59:00+01:00"), 1_767_571_140_000),
    ("epoch_ms", event(occurred_at=1_767_571_140_000), 1_767_571_140_000),
    ("fractional_seconds", event(occurred_at="2026-01-04T23:59:00.250Z"), 1_767_571_140_250),
    ("just_inside_future_bound", event(occurred_at=NOW + 300_000), NOW + 300_000),
]


@pytest.mark.parametrize(
    ("raw", "expected_ms"), [(r, m) for _, r, m in VALID], ids=[name for name, _, _ in VALID]
)
def test_both_timestamp_forms_become_epoch_ms(raw: bytes, expected_ms: int) -> None:
    result = decoder().decode(raw)
    assert isinstance(result, Event), result
    assert result.occurred_at == expected_ms


def test_unknown_fields_are_ignored_and_post_has_no_target() -> None:
    raw = event(type="post", target_id=..., text="hello", lang="en", extra={"a": 1})
    result = decoder().decode(raw)
    assert isinstance(result, Event)
    assert result.type is EventType.POST and result.target_id is None


def test_self_targeted_event_is_valid() -> None:
    result = decoder().decode(event(type="reply", target_id="alice", text="thread 2/3"))
    assert isinstance(result, Event) and result.self_targeted


def test_actor_snapshot_is_parsed() -> None:
    raw = event(
        actor={
            "created_at": "2025-12-30T00:00:00Z",
            "followers_count": 3,
            "following_count": 2000,
            "posts_count": 0,
            "verified": False,
        }
    )
    result = decoder().decode(raw)
    assert isinstance(result, Event) and result.actor is not None
    assert result.actor.following_count == 2000
    assert result.actor.created_at == 1_767_052_800_000
