"""schemas/ is generated from the models; committed files must not drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core.schemas import render, topic_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(topic_schemas()))
def test_committed_schema_matches_models(name: str, update_golden: bool) -> None:
    expected = render(topic_schemas()[name])
    path = SCHEMAS / name
    if update_golden:
        path.write_bytes(expected)
    assert path.exists(), f"{path} missing: run `make schemas`"
    assert path.read_bytes() == expected, f"{name} drifted from the models: run `make schemas`"


def test_no_stray_schema_files() -> None:
    assert {p.name for p in SCHEMAS.glob("*.json")} == set(topic_schemas())
