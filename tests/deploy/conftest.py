from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import go_tools
from tests.deploy.exported import DEPLOY


class _CrdLoader(yaml.SafeLoader):
    """PyYAML reads a bare `=` (an enum value in the CRDs) as YAML 1.1's `value` tag, which it
    cannot construct; it is a plain string."""


def _plain_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _plain_string)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run scripts/install-system-packages")
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return require("promtool")


@pytest.fixture(scope="session")
def composeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return go_tools.build_composeconfig(tmp_path_factory.mktemp("composeconfig"))


@pytest.fixture(scope="session")
def kubernetes_objects() -> list[dict[str, Any]]:
    return go_tools.kustomize_build(DEPLOY / "kubernetes")


@pytest.fixture(scope="session")
def prometheus_operator_crds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The served schema of each Prometheus Operator kind, by kind."""
    directory = go_tools.prometheus_operator_crds(tmp_path_factory.mktemp("go-download"))
    schemas = {}
    for path in directory.glob("monitoring.coreos.com_*.yaml"):
        crd = yaml.load(path.read_text(), Loader=_CrdLoader)
        for version in crd["spec"]["versions"]:
            if version["served"]:
                kind = f"{crd['spec']['group']}/{version['name']}/{crd['spec']['names']['kind']}"
                schemas[kind] = version["schema"]["openAPIV3Schema"]
    return schemas
