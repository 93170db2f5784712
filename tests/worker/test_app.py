"""What `create_app` derives from the settings without starting anything."""

from __future__ import annotations

import pytest

from service.settings import WorkerSettings
from service.worker.app import ingest_fetch_options


@pytest.mark.parametrize(
    ("wait_ms", "min_bytes", "expected"),
    [
        # The default: the broker holds a fetch up to 50 ms for 256 KiB of events.
        (50, 262_144, {"fetch_min_bytes": 262_144, "fetch_max_wait_ms": 50}),
        (10, 65_536, {"fetch_min_bytes": 65_536, "fetch_max_wait_ms": 10}),
        # Off: the first record answers; an idle fetch is held, not repeated in a loop.
        (0, 262_144, {"fetch_min_bytes": 1, "fetch_max_wait_ms": 500}),
    ],
)
def test_ingest_fetch_options(wait_ms: int, min_bytes: int, expected: dict[str, int]) -> None:
    worker = WorkerSettings(ingest_fetch_max_wait_ms=wait_ms, ingest_fetch_min_bytes=min_bytes)
    assert ingest_fetch_options(worker) == expected
