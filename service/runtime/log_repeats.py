"""Log lines that repeat, such as a client's every failed reconnect during a broker outage,
at most once per interval each, with a count of those held back.

A broker outage made the Kafka clients log ~2,300 error lines a second: 73,000 in 31 s. With
this filter the first line of each kind goes out at once (the state change), then one line
every `interval_s` while it keeps repeating (the reminder), saying how many it stands for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RepeatedLines(logging.Filter):
    def __init__(
        self, interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        # (logger, level, message template) -> (when last let through, held back since)
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        last = self._seen.get(kind)
        if last is not None and now - last[0] < self._interval_s:
            self._seen[kind] = (last[0], last[1] + 1)
            return False
        held = last[1] if last is not None else 0
        self._seen[kind] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like it in the last {self._interval_s:g} s)"
        if len(self._seen) > 10_000:  # bounded: templates, not values, but be safe
            self._seen.clear()
        return True
