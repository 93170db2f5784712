"""Repeated log lines: the first at once, then one reminder per interval counting the rest."""

from __future__ import annotations

import logging

from service.runtime.log_repeats import RepeatedLines


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, level: int = logging.ERROR, name: str = "aiokafka.conn") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, ("10.0.0.1",), None)


def test_an_outage_logs_its_start_then_a_reminder_every_interval() -> None:
    # time   0.0 s  first failure         -> logged
    #        0.0-4.9 999 more of the same  -> held back
    #        5.0 s  still failing          -> logged, "(999 more like it ...)"
    clock = Clock()
    lines = RepeatedLines(interval_s=5.0, clock=clock)
    assert lines.filter(record("Unable connect to node %s"))
    held = 0
    for step in range(999):
        clock.now = step * 0.0049
        held += not lines.filter(record("Unable connect to node %s"))
    assert held == 999
    clock.now = 5.0
    reminder = record("Unable connect to node %s")
    assert lines.filter(reminder)
    assert "(999 more like it in the last 5 s)" in reminder.getMessage()


def test_other_kinds_and_info_lines_go_through() -> None:
    clock = Clock()
    lines = RepeatedLines(interval_s=5.0, clock=clock)
    assert lines.filter(record("Unable connect to node %s"))
    assert lines.filter(record("Unable to update metadata from %s"))
    assert lines.filter(record("Unable connect to node %s", name="aiokafka.cluster"))
    assert lines.filter(record("Unable connect to node %s", level=logging.WARNING))
    for _ in range(3):
        assert lines.filter(record("Joined group %s", level=logging.INFO))
