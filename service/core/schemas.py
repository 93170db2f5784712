"""JSON Schemas of every topic's messages, generated from the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel

from service.core.models import Alert, DeadLetter, Event, ShadowAlert

TOPIC_MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "social.events": (Event, "validation"),
    "social.alerts": (Alert, "serialization"),
    "social.alerts.shadow": (ShadowAlert, "serialization"),
    "social.events.dlq": (DeadLetter, "serialization"),
}


def topic_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of one topic's messages (the AsyncAPI document embeds these too)."""
    model, mode = TOPIC_MODELS[topic]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **model.model_json_schema(mode=mode),  # type: ignore[arg-type]
    }


def topic_schemas() -> dict[str, dict[str, Any]]:
    return {f"{topic}.schema.json": topic_schema(topic) for topic in TOPIC_MODELS}


def render(schema: dict[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_schemas(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in topic_schemas().items():
        path = out_dir / name
        path.write_bytes(render(schema))
        written.append(path)
    return written
