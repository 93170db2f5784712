"""Containment: an exception inside the core for one event dead-letters that event with code
`processing_error`, and the stage goes on with the next."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from service.core.pipeline import Pipeline
from service.settings import Settings
from tests.runtime.test_checkpoint import traffic
from tests.runtime.twin import TwinWorld


@pytest.mark.parametrize("stage", ["actor_stage", "target_stage", "requester_stage"])
def test_an_event_the_core_raises_on_is_dead_lettered_and_the_stage_goes_on(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, _, expected = traffic()
    original = getattr(Pipeline, stage)
    failed: list[str] = []

    def flaky(self: Pipeline, item: Any, *args: Any) -> Any:
        # The first event (or request) of a spam scenario's subject breaks the core.
        if not failed and ("spam-rt-1" in repr(item)):
            failed.append(item.event_id)
            raise ZeroDivisionError("a bug in a detector")
        return original(self, item, *args)

    monkeypatch.setattr(Pipeline, stage, flaky)
    world = TwinWorld(Settings(), lines, persistent=False)
    asyncio.run(world.run(None))

    assert failed, "the stream never reached the failing event"
    letters = [orjson.loads(value) for value in world.dead_letters.values()]
    assert [letter["code"] for letter in letters] == ["processing_error"]
    letter = letters[0]
    assert "ZeroDivisionError: a bug in a detector" in letter["message"]
    assert letter["source_topic"] == {"actor_stage": "stage1", "target_stage": "stage2"}.get(
        stage, "stage3"
    )
    assert orjson.loads(base64.b64decode(letter["value_b64"]))["event_id"] == failed[0]
    assert world.metrics.rejected.labels("processing_error")._value.get() == 1
    # Everything after it went on: the other subjects' alerts are all there.
    sent = {(a["rule"], a["subject_id"]) for a in world.alerts_sent()}
    assert {(rule, subject) for rule, subject, *_ in expected if subject != "spam-rt-1"} <= sent
    assert world.restarts == 0
