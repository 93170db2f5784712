"""The floor for any Faust app here: one agent that only consumes a topic and counts.

Run as `python -m bench.bare_faust BOOTSTRAP TOPIC COUNT OUT`; writes the seconds from its
first message to its COUNT-th into the file OUT (Faust takes over stdout) and exits.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from typing import Any

import faust


def main() -> None:
    bootstrap, topic_name, expected, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = baseline_app("bare", bootstrap, key_serializer="raw", value_serializer="raw")
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    drained = DrainClock(expected, out)

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            drained.one_more()

    run_worker(app)


def baseline_app(name: str, bootstrap: str, **options: Any) -> faust.App:
    """A fresh Faust app reading from the start, in memory, without a web server."""
    return faust.App(
        f"{name}-{uuid.uuid4().hex[:6]}",
        broker=f"kafka://{bootstrap}",
        store="memory://",
        datadir=tempfile.mkdtemp(),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        **options,
    )


class DrainClock:
    """Times a consumer from its first message to its `expected`-th, writes the seconds into
    the file `out` (Faust takes over stdout) and ends the process."""

    def __init__(self, expected: int, out: str) -> None:
        self.expected = expected
        self.out = out
        self.seen = 0
        self.started = 0.0

    def one_more(self) -> None:
        if self.seen == 0:
            self.started = time.perf_counter()
        self.seen += 1
        if self.seen == self.expected:
            with open(self.out, "w") as result:
                result.write(f"{time.perf_counter() - self.started:.6f}\n")
            os._exit(0)


def run_worker(app: faust.App) -> None:
    worker = faust.Worker(app, loglevel="warning", quiet=True)
    # The spinner lowers the root logger to DEBUG (see service/cli.py); no baseline pays that.
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
