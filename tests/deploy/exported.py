"""What the service really exports and accepts, for checking the deployment files against it:
metric names (ours and Faust's sensor) and settings variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, ValidationError

from service.runtime.metrics import Metrics
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Metrics Prometheus makes itself, for every target or every alert.
PROMETHEUS_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
# service/worker/app.py passes this name_prefix to setup_prometheus_sensors.
FAUST_PREFIX = "faust"
_SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}
# Our names and Faust's, never part of a recorded name (those have colons around them).
_METRIC_NAME = re.compile(r"(?<![\w:])(?:reciprocity|faust)_\w+(?![\w:])")


def exported_metric_names() -> frozenset[str]:
    """Every series name a worker can put on /metrics (not only those that have values yet)."""
    registry = CollectorRegistry()
    Metrics(registry)
    FaustMetrics.create(registry, FAUST_PREFIX)
    names = {
        family.name + suffix
        for family in registry.collect()
        for suffix in _SAMPLE_SUFFIXES[family.type]
    }
    return frozenset(names)


def referenced_metric_names(expr: str) -> set[str]:
    return set(_METRIC_NAME.findall(expr))


def unknown_settings(variables: Mapping[str, str]) -> list[str]:
    """Variables that name no setting. The settings ignore an unknown section silently
    (RECIPROCITY_WORKR__STORE), so a typo there would go unnoticed at start."""
    unknown = []
    for name in variables:
        if not name.startswith("RECIPROCITY_"):
            unknown.append(name)
            continue
        model: type[BaseModel] = Settings
        path = name.removeprefix("RECIPROCITY_").lower().split("__")
        for depth, part in enumerate(path):
            field = model.model_fields.get(part)
            if field is None:
                unknown.append(name)
                break
            annotation = field.annotation
            is_last = depth == len(path) - 1
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                if is_last:
                    unknown.append(name)  # a whole section is not one variable
                    break
                model = annotation
            elif not is_last:
                unknown.append(name)
                break
    return unknown


def assert_valid_settings(variables: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker would start with exactly these variables (and no others from this process)."""
    assert not unknown_settings(variables), unknown_settings(variables)
    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("RECIPROCITY_")]:
            patch.delenv(name)
        for name, value in variables.items():
            patch.setenv(name, value)
        try:
            Settings()
        except ValidationError as exc:
            pytest.fail(f"the worker would refuse these settings: {exc}")
