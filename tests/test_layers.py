"""Imports point one way, downward: core ← runtime ← worker; local tooling is imported by no
layer a production worker runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[1] / "service"

# What each layer may import, of ours and of the frameworks that matter here.
FORBIDDEN = {
    "core": ("service.runtime", "service.worker", "service.devtools", "service.cli", "faust",
             "mode", "aiokafka", "prometheus_client"),
    "detectors": ("service.runtime", "service.worker", "service.devtools", "service.cli",
                  "faust", "mode", "aiokafka", "prometheus_client"),
    "runtime": ("service.worker", "service.devtools", "service.cli", "faust", "mode"),
    "worker": ("service.devtools", "service.cli"),
    # A producer beside the worker: the core's models and decoding, the settings, and the
    # runtime's Kafka client options (one place for security); nothing of Faust.
    "bridge": ("service.worker", "service.devtools", "service.cli", "faust", "mode"),
}  # fmt: skip


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_downward(layer: str) -> None:
    modules = sorted((SERVICE / layer).rglob("*.py"))
    assert modules, f"service/{layer}/ is empty"
    wrong = [
        f"{path.relative_to(SERVICE)} imports {name}"
        for path in modules
        for name in sorted(imported(path))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer])
    ]
    assert not wrong, "\n".join(wrong)


def test_the_settings_depend_on_the_core_only() -> None:
    ours = {name for name in imported(SERVICE / "settings.py") if name.startswith("service.")}
    assert all(name.startswith("service.core.") for name in ours), ours
