"""Stage messages: items survive the trip, messages stay under their size bound."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from service.core.context import TargetMessage
from service.core.decoding import EventDecoder, Rejection
from service.core.models import Event, EventType
from service.devtools.generate import generate_traffic
from service.runtime.framing import (
    Origin,
    StageOutbox,
    decode_event,
    decode_message,
    decode_target_message,
    encode_event,
    encode_message,
    encode_target_message,
    pack,
)
from service.settings import InputSettings

LATER_MS = 1_900_000_000_000


def validated(raw: dict[str, Any]) -> Event:
    event = EventDecoder(InputSettings(), lambda: LATER_MS).decode(orjson.dumps(raw))
    assert not isinstance(event, Rejection), event
    return event


EDGE_CASES = [
    {"event_id": "p", "type": "post", "actor_id": "a", "occurred_at": 5, "text": "hello"},
    {
        "event_id": "f",
        "type": "follow",
        "actor_id": "a",
        "target_id": "b",
        "occurred_at": "2026-01-05T10:00:00+01:00",
        "actor": {"created_at": "2025-12-01T00:00:00Z", "posts_count": 0},
        "schema_version": 2,
    },
    {"event_id": "r", "type": "reply", "actor_id": "a", "target_id": "a", "occurred_at": 1,
     "post_id": "x" * 128, "text": "é" * 10_000},
]  # fmt: skip


@pytest.mark.parametrize("raw", EDGE_CASES, ids=[case["event_id"] for case in EDGE_CASES])
def test_an_event_comes_out_of_a_stage_message_as_it_went_in(raw: dict[str, Any]) -> None:
    event = validated(raw)
    outbox = StageOutbox()
    outbox.add(0, encode_event(event))
    ((_, value),) = list(outbox.messages(-1, -1))
    ((origin, (item,)),) = decode_message(value)
    copy = decode_event(item)
    assert origin == Origin(-1, -1, 0)
    assert copy == event
    assert copy.model_dump() == event.model_dump()
    assert copy.model_fields_set == Event.model_construct(**dict(event)).model_fields_set
    assert copy.self_targeted == event.self_targeted


def test_generated_traffic_round_trips() -> None:
    events = [validated(raw) for raw in generate_traffic(3, users=500, organic_events=500).events]
    assert [decode_event(orjson.loads(orjson.dumps(encode_event(e)))) for e in events] == events


def test_messages_are_cut_below_their_byte_bound_and_keep_item_order() -> None:
    outbox = StageOutbox(max_message_bytes=1_000)
    items = [["e", n, "x" * 90] for n in range(50)]
    for item in items:
        outbox.add(3, item)
    messages = list(outbox.messages(7, 41))
    assert len(messages) > 1
    got = []
    for chunk, (partition, value) in enumerate(messages):
        assert partition == 3 and len(value) <= 1_000
        ((origin, message_items),) = decode_message(value)
        assert origin == Origin(7, 41, chunk)
        got.extend(message_items)
    assert got == items


def test_chunks_of_several_upstream_messages_pack_whole_into_few_messages() -> None:
    chunks = []
    for offset in range(6):
        outbox = StageOutbox(max_message_bytes=1_000)
        for n in range(offset + 1):
            outbox.add(2, ["e", offset, n, "x" * 90])
        chunks.extend(outbox.chunks(5, offset))
    messages = pack(chunks, max_message_bytes=1_000)
    assert 1 < len(messages) < len(chunks)
    parts = [part for message in messages for part in decode_message(encode_message(message))]
    assert [origin for origin, _ in parts] == [chunk.origin for chunk in chunks]
    assert [items for _, items in parts] == [
        [orjson.loads(item) for item in chunk.items] for chunk in chunks
    ]
    for message in messages:
        assert len(encode_message(message)) <= 1_000


def test_a_chunk_depends_on_its_upstream_message_alone() -> None:
    outbox = StageOutbox(max_message_bytes=1_000)
    for n in range(30):
        outbox.add(1, ["e", n, "y" * 90])
    alone = list(outbox.chunks(4, 8))
    other = StageOutbox(max_message_bytes=1_000)
    other.add(1, ["other"])
    packed = pack([*other.chunks(3, 2), *alone], max_message_bytes=1_000)
    found = [chunk for message in packed for chunk in message if chunk.origin.partition == 4]
    assert found == alone


def test_messages_of_the_one_part_format_are_still_read() -> None:
    value = orjson.dumps([[7, 41, 2], ["a"], ["b"]])
    assert decode_message(value) == [(Origin(7, 41, 2), [["a"], ["b"]])]


TARGET_MESSAGES = [
    TargetMessage("e1", 7, EventType.FOLLOW, "a", "b", 5, False, 3, (11, 4_294_967_295)),
    TargetMessage("e2", 8, EventType.RETWEET, "a", "b", 6, True, 0),
]


@pytest.mark.parametrize("message", TARGET_MESSAGES, ids=["follow", "retweet"])
def test_a_target_message_survives_the_trip(message: TargetMessage) -> None:
    item = orjson.loads(orjson.dumps(encode_target_message(message)))
    assert decode_target_message(item) == message


def test_a_target_message_from_before_lockstep_reads_with_no_co_follows() -> None:
    stored = ["e1", 7, "follow", "a", "b", 5, False, 3]  # as written before co_follows
    assert decode_target_message(stored).co_follows == ()
