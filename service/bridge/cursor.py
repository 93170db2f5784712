"""Where the bridge resumes: Jetstream's cursor (a frame's time_us), moved only over frames
whose events Kafka acknowledged, and kept on disk.

At-least-once: a frame counts as done once every event it made, and every event of every
frame before it, is acknowledged; the cursor is the time_us of the newest such frame. A
restart resumes from it (rewound a few seconds), so what was sent but not yet acknowledged is
sent again, with the same event ids, and the worker ignores the copies.

The cursor follows the frames, not the clock: it is the time of the last frame done in read
order, not the largest time seen, because frames are not strictly in time_us order and a
larger time may have come before a frame still in flight. So after a rewind it moves back
over the frames read again, by up to the rewind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import deque
from pathlib import Path
from typing import Any


class CursorFileError(RuntimeError):
    """The cursor file is there but does not hold a cursor."""


class CursorFile:
    """One integer (time_us) in a text file, replaced atomically: a crash mid-write leaves the
    previous cursor, never half of a new one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int | None:
        """The saved cursor; None when there is no file yet."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CursorFileError(f"cannot read the cursor file {self.path}: {exc}") from None
        if not text.isdigit() or not 10**15 <= int(text) < 10**16:
            raise CursorFileError(
                f"the cursor file {self.path} does not hold a Jetstream time_us ({text[:40]!r}); "
                "remove it, or start with --from-now"
            )
        return int(text)

    def save(self, time_us: int) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="ascii") as out:
                out.write(f"{time_us}\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        # The rename itself is durable only once the directory is.
        directory_handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_handle)
        finally:
            os.close(directory_handle)


class PendingFrames:
    """Frames in the order read, each with the producer's futures for its events."""

    def __init__(self) -> None:
        self._frames: deque[tuple[int, list[asyncio.Future[Any]]]] = deque()

    def add(self, time_us: int, sends: list[asyncio.Future[Any]]) -> None:
        self._frames.append((time_us, sends))

    def acknowledged(self) -> int | None:
        """Drops the leading frames whose sends all completed and returns the time_us of the
        last one dropped (None if none was). Raises the error of a failed send: Kafka gave
        up on it (the producer retries what it can until its delivery timeout), and the
        cursor must not pass it."""
        newest = None
        while self._frames:
            time_us, sends = self._frames[0]
            if not all(send.done() for send in sends):
                break
            for send in sends:
                error = send.exception()
                if error is not None:
                    raise error
            self._frames.popleft()
            newest = time_us
        return newest

    def sends(self) -> list[asyncio.Future[Any]]:
        """Every send not yet dropped, to wait for."""
        return [send for _, frame_sends in self._frames for send in frame_sends]

    def __len__(self) -> int:
        return len(self._frames)
