"""Resident memory and serialized state per tracked account, through the core (no Kafka).

    python -m bench.state_memory ACCOUNTS      # one JSON object on stdout

`bench.speed` runs it once per size, each in a fresh process, so the growth of resident memory
is that size's state alone and not what a larger run left in the allocator.

The stream (`STREAM_SHAPE`): accounts a0000000 … aN-1; account i follows two accounts and
retweets a third, all three chosen by fixed permutations of the accounts, so every account also
receives exactly two follows and one retweet. 3 × N events in account order, spread over 24 h of
event time, through all stages of `Replayer.run` (the same `Pipeline` the worker calls) with
state in `MemoryTables`. Every account ends with an actor row, a target row and three relation
rows it owns: a small account's footprint, the floor of what one tracked account costs.

State bytes are what the worker's changelogs would hold: each key and value encoded by the
codecs of `service.runtime.tables` (UTF-8 key, orjson of `to_value()`).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from service.cli import tune_gc
from service.core.models import Event, EventType
from service.core.replay import Replayer
from service.runtime.tables import ACTOR_CODEC, KEY_CODEC, RELATION_CODEC, TARGET_CODEC
from service.settings import DetectionSettings

STREAM_SHAPE = (
    "each account follows 2 accounts and retweets 1 (fixed permutations: each also receives "
    "2 follows and 1 retweet); 3 events per account over 24 h of event time"
)
EVENTS_PER_ACCOUNT = 3
START_MS = 1_767_571_200_000  # 2026-01-05T00:00Z, as `generate`
SPAN_MS = 24 * 3_600_000
# Primes, so i -> (i * p + c) mod N is a permutation for any N they do not divide.
_PERMUTATIONS = ((7_919, 1), (104_729, 7), (1_299_709, 13))
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size, from /proc (no psutil)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_BYTES


def peak_resident_bytes() -> int:
    """The high-water mark of the resident set (VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return -1


def account_id(i: int) -> str:
    return f"a{i:07d}"


def _partner(i: int, accounts: int, which: int) -> int:
    multiplier, offset = _PERMUTATIONS[which]
    j = (i * multiplier + offset) % accounts
    return j if j != i else (j + 1) % accounts


def account_stream(accounts: int) -> Iterator[Event]:
    """The events of `STREAM_SHAPE`, made on the fly so that only the state stays in memory."""
    if accounts < 4 or any(accounts % p == 0 for p, _ in _PERMUTATIONS):
        raise ValueError(f"accounts must be >= 4 and not a multiple of {_PERMUTATIONS}")
    step = SPAN_MS / accounts
    kinds = (EventType.FOLLOW, EventType.FOLLOW, EventType.RETWEET)
    for i in range(accounts):
        actor = account_id(i)
        at = START_MS + int(i * step)
        for which, kind in enumerate(kinds):
            yield Event.model_construct(
                event_id=f"m{i}-{which}",
                type=kind,
                actor_id=actor,
                target_id=account_id(_partner(i, accounts, which)),
                occurred_at=at + which,
                post_id=None,
                text=None,
                actor=None,
                schema_version=1,
            )


def _table_bytes(rows: dict[str, Any], dump_value: Any) -> int:
    dump_key = KEY_CODEC.dumps
    return sum(len(dump_key(key)) + len(dump_value(value)) for key, value in rows.items())


def measure(accounts: int) -> dict[str, Any]:
    """Feed `account_stream(accounts)` through the core; resident memory and state bytes."""
    tune_gc()  # as the worker and replay run
    replayer = Replayer(DetectionSettings(), lambda: START_MS + SPAN_MS)
    gc.collect()
    before = resident_bytes()
    started = time.perf_counter()
    events = 0
    for event in account_stream(accounts):
        replayer.run(event)
        events += 1
    seconds = time.perf_counter() - started
    gc.collect()
    after = resident_bytes()
    tables = replayer.tables
    tracked = len(tables.actors.keys() | tables.targets.keys())
    state_bytes = {
        "actors": _table_bytes(tables.actors, ACTOR_CODEC.dumps),
        "targets": _table_bytes(tables.targets, TARGET_CODEC.dumps),
        "relations": _table_bytes(tables.relations, RELATION_CODEC.dumps),
    }
    total_bytes = sum(state_bytes.values())
    return {
        "accounts": tracked,
        "events": events,
        "stream": STREAM_SHAPE,
        "seconds": round(seconds, 2),
        "rows": {
            "actors": len(tables.actors),
            "targets": len(tables.targets),
            "relations": len(tables.relations),
        },
        "resident_bytes_before": before,
        "resident_bytes_after": after,
        "resident_bytes_peak": peak_resident_bytes(),
        "resident_bytes_per_account": round((after - before) / tracked, 1),
        "state_bytes": state_bytes,
        "state_bytes_per_account": round(total_bytes / tracked, 1),
        "state_bytes_per_account_by_table": {
            name: round(size / tracked, 1) for name, size in state_bytes.items()
        },
    }


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.state_memory ACCOUNTS")
    sys.stdout.buffer.write(orjson.dumps(measure(int(sys.argv[1]))) + b"\n")


if __name__ == "__main__":
    main()
