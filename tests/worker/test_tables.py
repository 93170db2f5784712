"""CoalescedTable on a stand-in for a Faust table: what the store holds and what the
changelog gets."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.serializers import codecs

from service.worker.tables import (
    KEY_CODEC,
    RELATION_CODEC,
    CoalescedTable,
    StageTables,
    register_codecs,
)


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int]] = []

    async def send(
        self, topic: str, key: bytes, value: bytes | None, partition: int, *_: Any
    ) -> Any:
        self.sent.append((topic, key, value, partition))
        return asyncio.sleep(0, SimpleNamespace(offset=len(self.sent) - 1))


def faust_like_table(data: dict[str, Any]) -> Any:
    register_codecs()
    return SimpleNamespace(
        data=data,
        key_serializer=KEY_CODEC,
        value_serializer=RELATION_CODEC,
        app=SimpleNamespace(producer=Producer()),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-relations-changelog"),
    )


def flush(table: CoalescedTable[Any], partition: int) -> list[Any]:
    async def run() -> list[Any]:
        changes, records = table.commit()
        table.store(changes)
        return [await sent for sent in await table.send(records, partition)]

    return asyncio.run(run())


def test_reads_see_pending_and_committed_writes_and_the_store_only_stored_ones() -> None:
    store = {"a": [1]}
    table: CoalescedTable[Any] = CoalescedTable(faust_like_table(store))
    table["a"] = [2]
    table["b"] = [3]
    del table["a"]
    assert table.get("a") is None and table["b"] == [3]
    with pytest.raises(KeyError):
        table["a"]
    first, _ = table.commit()
    table["b"] = [4]
    second, _ = table.commit()
    # Committed, outputs not yet acknowledged: reads see it, a persistent store must not.
    assert table.get("a") is None and table["b"] == [4]
    assert store == {"a": [1]}
    table.store(first)
    assert store == {"b": [3]} and table["b"] == [4]
    table.store(second)
    assert store == {"b": [4]}


def test_a_commit_whose_outputs_failed_is_neither_stored_nor_read() -> None:
    async def run() -> tuple[dict[str, Any], Any]:
        store: dict[str, Any] = {"a": [1]}
        tables = StageTables(faust_like_table(store), faust_like_table({}), faust_like_table({}))
        tables.actors["a"] = [2]
        failed = tables.commit()
        tables.abandon(failed)
        tables.actors["c"] = [3]
        # Not held up by the abandoned commit.
        for delivery in await tables.send(tables.commit(), 0):
            await asyncio.gather(*delivery)
        return store, tables.actors.get("a")

    store, read = asyncio.run(run())
    assert store == {"a": [1], "c": [3]}
    assert read == [1]


@pytest.mark.parametrize(
    ("writes", "records"),
    [
        # one key written three times in a batch: one record, the last value
        ([("a", [1]), ("a", [2]), ("a", [3])], [(b"a", b"[3]")]),
        ([("a", [1]), ("b", [2])], [(b"a", b"[1]"), (b"b", b"[2]")]),
        # a deletion is a tombstone
        ([("a", [1]), ("a", None)], [(b"a", None)]),
        ([], []),
    ],
)
def test_one_changelog_record_per_key_in_the_tables_own_encoding(
    writes: list[tuple[str, Any]], records: list[tuple[bytes, bytes | None]]
) -> None:
    faust_table = faust_like_table({})
    table: CoalescedTable[Any] = CoalescedTable(faust_table)
    for key, value in writes:
        if value is None:
            del table[key]
        else:
            table[key] = value
    metadata = flush(table, partition=5)
    sent = faust_table.app.producer.sent
    assert [(key, value) for _, key, value, _ in sent] == records
    assert {(topic, partition) for topic, _, _, partition in sent} <= {
        ("app-relations-changelog", 5)
    }
    assert len(metadata) == len(records)
    for key, value in records:
        if value is not None:
            assert codecs.loads(RELATION_CODEC, value) == faust_table.data[key.decode()]


def test_a_second_flush_sends_nothing_new() -> None:
    faust_table = faust_like_table({})
    table: CoalescedTable[Any] = CoalescedTable(faust_table)
    table["a"] = [1]
    flush(table, 0)
    flush(table, 0)
    assert len(faust_table.app.producer.sent) == 1
