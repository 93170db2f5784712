"""The short version of the fault-injection campaign (`python -m bench.chaos` runs 20 faults):
a worker killed with SIGKILL, the broker stopped and, where this user may mount a tmpfs (root),
the RocksDB worker's disk filled, while traffic is produced; nothing may be lost, counted twice
or left unalerted."""

from __future__ import annotations

import pytest
from rich.console import Console

from bench.chaos import Disk, Options, print_tables, run_campaign


@pytest.mark.kafka
@pytest.mark.crash
def test_a_sigkill_and_a_broker_outage_lose_and_double_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = ("sigkill", "broker", *(("disk",) if Disk.can_mount() else ()))
    result = run_campaign(Options(plan=plan, spacing_seconds=5, rate=150, seed=3), print)
    print_tables(result, Console(width=150))
    assert [row["kind"] for row in result["faults"]] == list(plan)
    assert result["events"] > 1_000
    assert result["events_lost"] == 0
    assert result["events_double_counted"] == 0
    assert result["alerts_missing"] == []
