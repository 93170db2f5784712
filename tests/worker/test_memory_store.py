"""The memory store keeps the offset its data has reached per changelog partition, so that a
rebalance that leaves a partition here does not re-read its whole changelog (item 9 of
service/worker/workarounds.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP

from service.settings import Settings
from service.worker.app import create_app
from service.worker.workarounds import OffsetKeepingMemoryStore


def changelog_event(tp: TP, offset: int, key: str, value: Any) -> Any:
    message = SimpleNamespace(tp=tp, partition=tp.partition, offset=offset, value=value)
    return SimpleNamespace(key=key, value=value, message=message)


@pytest.fixture
def actors() -> Any:
    settings = Settings.model_validate({"worker": {"app_id": "rx", "store": "memory://"}})
    return create_app(settings).tables["actors"]


def test_a_memory_table_gets_the_offset_keeping_store(actors: Any) -> None:
    assert isinstance(actors.data, OffsetKeepingMemoryStore)


def test_offsets_come_from_commits_and_recovery_and_go_with_the_data(actors: Any) -> None:
    store = actors.data
    topic = actors.changelog_topic.get_topic_name()
    tp0, tp1 = TP(topic, 0), TP(topic, 1)
    assert store.persisted_offset(tp0) is None  # nothing known: recovery reads it all
    store.set_persisted_offset(tp0, 41)  # a commit stored up to 41
    assert store.persisted_offset(tp0) == 41
    # recovery applies records of both partitions: each gets the newest offset it applied
    batch = [
        changelog_event(tp0, 42, "a", 1),
        changelog_event(tp0, 44, "b", 2),
        changelog_event(tp1, 7, "c", 3),
        changelog_event(tp0, 43, "a", 4),
    ]
    store.apply_changelog_batch(batch, lambda key: key, lambda value: value)
    assert (store.persisted_offset(tp0), store.persisted_offset(tp1)) == (44, 7)
    assert dict(store.data) == {"a": 4, "b": 2, "c": 3}
    # after a rebalance that keeps partition 0 only, Faust drops partition 1's data: and its
    # offset, or a later return of partition 1 would skip the records it needs
    asyncio.run(store.on_recovery_completed({tp0}, set()))
    assert dict(store.data) == {"a": 4, "b": 2}
    assert (store.persisted_offset(tp0), store.persisted_offset(tp1)) == (44, None)
