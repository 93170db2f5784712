"""The cursor: moved only over acknowledged frames, kept on disk atomically."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from service.bridge.cursor import CursorFile, CursorFileError, PendingFrames
from tests.bridge.jetstream_fixtures import t


def test_a_saved_cursor_is_loaded_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    cursors = CursorFile(tmp_path / "state" / "jetstream.cursor")
    assert cursors.load() is None
    cursors.save(t(5))
    cursors.save(t(6))
    assert cursors.load() == t(6)
    assert os.listdir(tmp_path / "state") == ["jetstream.cursor"]


def test_a_save_that_fails_before_the_rename_leaves_the_previous_cursor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cursors = CursorFile(tmp_path / "jetstream.cursor")
    cursors.save(t(5))

    def crash(*_: Any) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        cursors.save(t(6))
    monkeypatch.undo()
    assert cursors.load() == t(5)
    assert os.listdir(tmp_path) == ["jetstream.cursor"]


@pytest.mark.parametrize("content", ["", "yesterday", "12345", "-1779719000000000", "1.7e15"])
def test_a_file_that_holds_no_cursor_is_an_error_that_names_it(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "jetstream.cursor"
    path.write_text(content)
    with pytest.raises(CursorFileError, match=r"jetstream\.cursor.*--from-now"):
        CursorFile(path).load()


def test_the_cursor_moves_only_over_frames_whose_sends_and_all_before_are_acknowledged() -> None:
    async def run() -> list[int | None]:
        loop = asyncio.get_running_loop()
        first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
        pending = PendingFrames()
        pending.add(t(1), [first, second])
        pending.add(t(2), [])  # a skipped frame: nothing to wait for
        pending.add(t(3), [third])
        seen = [pending.acknowledged()]
        third.set_result(None)
        seen.append(pending.acknowledged())  # the third is done, the first frame is not
        first.set_result(None)
        second.set_result(None)
        seen.append(pending.acknowledged())
        seen.append(pending.acknowledged())  # nothing new
        return seen

    assert asyncio.run(run()) == [None, None, t(3), None]


def test_a_failed_send_keeps_the_cursor_from_passing_its_frame() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        good, bad = loop.create_future(), loop.create_future()
        pending = PendingFrames()
        pending.add(t(1), [good])
        pending.add(t(2), [bad])
        good.set_result(None)
        bad.set_exception(RuntimeError("refused"))
        for _ in range(2):  # every time: the failed frame stays
            with pytest.raises(RuntimeError, match="refused"):
                pending.acknowledged()
        assert len(pending) == 1

    asyncio.run(run())
