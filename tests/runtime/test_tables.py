"""Overlay tables over a store and a changelog: what reads see, what the store holds, what the
changelog gets, and in which order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.runtime.tables import (
    RELATION_CODEC,
    MemoryChangelog,
    MemoryStore,
    OverlayTable,
    StateTables,
)


def table(store: MemoryStore | None = None, changelog: MemoryChangelog | None = None) -> Any:
    return OverlayTable(
        "relations",
        store if store is not None else MemoryStore(),
        changelog or MemoryChangelog(),
        RELATION_CODEC,
    )


def state_tables() -> StateTables:
    return StateTables(table(), table(), table())


def test_reads_see_pending_and_committed_writes_and_the_store_only_stored_ones() -> None:
    store = MemoryStore({"a": [1]})
    overlay = table(store)
    overlay["a"] = [2]
    overlay["b"] = [3]
    del overlay["a"]
    assert overlay.get("a") is None and overlay["b"] == [3]
    with pytest.raises(KeyError):
        overlay["a"]
    first, _ = overlay.commit()
    overlay["b"] = [4]
    second, _ = overlay.commit()
    # Committed, not yet acknowledged: reads see it, a persistent store must not.
    assert overlay.get("a") is None and overlay["b"] == [4]
    assert store == {"a": [1]}
    overlay.store_changes(first, 0)
    assert store == {"b": [3]} and overlay["b"] == [4]
    overlay.store_changes(second, 0)
    assert store == {"b": [4]}


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
    overlay = table()
    for key, value in writes:
        if value is None:
            del overlay[key]
        else:
            overlay[key] = value
    _, got = overlay.commit()
    assert got == records


def test_a_commit_reaches_the_store_only_once_its_records_are_acknowledged() -> None:
    async def run() -> tuple[list[Any], MemoryStore, MemoryChangelog]:
        tables = state_tables()
        store, changelog = tables.relations.store, tables.relations.changelog
        tables.relations["a"] = [2]
        commit = tables.commit(partition=5)
        seen = [store.get("a"), tables.relations.get("a")]
        await tables.send([commit])
        return seen, store, changelog

    seen, store, changelog = asyncio.run(run())
    assert seen == [None, [2]]
    assert store == {"a": [2]} and store.offsets == {5: 0}
    assert changelog.partitions == {5: [(b"a", b"[2]")]}


def test_relation_records_are_acknowledged_before_account_records_are_sent() -> None:
    order: list[str] = []

    class Recording(MemoryChangelog):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        async def send(self, partition: int, records: Any) -> Any:
            order.append(f"send {self.name}")
            done = await super().send(partition, records)

            async def acknowledged() -> int:
                await asyncio.sleep(0)
                order.append(f"ack {self.name}")
                return int(await done)

            return acknowledged()

    async def run() -> None:
        tables = StateTables(
            OverlayTable("actors", MemoryStore(), Recording("actors"), RELATION_CODEC),
            OverlayTable("targets", MemoryStore(), Recording("targets"), RELATION_CODEC),
            OverlayTable("relations", MemoryStore(), Recording("relations"), RELATION_CODEC),
        )
        tables.actors["a"] = [1]
        tables.relations["a b"] = [1]
        await tables.send([tables.commit(0)])

    asyncio.run(run())
    assert order == ["send relations", "ack relations", "send actors", "ack actors"]


def test_a_commit_given_up_is_neither_stored_nor_read() -> None:
    async def run() -> tuple[MemoryStore, Any]:
        tables = state_tables()
        tables.actors.store.put("a", [1], 0)
        tables.actors["a"] = [2]
        failed = tables.commit(0)
        tables.abandon(failed)
        tables.actors["c"] = [3]
        await asyncio.wait_for(tables.send([tables.commit(0)]), timeout=5)
        return tables.actors.store, tables.actors.get("a")

    store, read = asyncio.run(run())
    assert store == {"a": [1], "c": [3]}
    assert read == [1]


def test_commits_sent_together_are_merged_per_key_in_commit_order() -> None:
    async def run() -> tuple[MemoryStore, list[Any], int]:
        tables = state_tables()
        tables.relations["k"] = [1]
        tables.relations["j"] = [1]
        older = tables.commit(0)
        tables.relations["k"] = [2]
        newer = tables.commit(0)
        tables.relations["k"] = [3]
        elsewhere = tables.commit(1)
        sent = await tables.send([older, newer, elsewhere])
        return tables.relations.store, list(tables.relations.changelog.replay()), sent

    store, log, sent = asyncio.run(run())
    # One record per key and partition, the newest value; the store ends with the newest.
    assert log == [(b"k", b"[2]"), (b"j", b"[1]"), (b"k", b"[3]")]
    assert sent == 3
    assert store == {"k": [3], "j": [1]}
