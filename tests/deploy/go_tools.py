"""The real tools behind the deployment tests, pinned and fetched through the Go module proxy.

`tests/deploy/go/go.mod` (with its go.sum) pins kustomize, the renderer inside `kubectl apply -k`,
and compose-go, the loader inside `docker compose`; `composeconfig` is a few lines around the
latter. The Prometheus Operator's CRDs come from its Go module, pinned below with its checksum.
Modules and builds are cached outside the repository: `~/.cache/reciprocity/go-mod` (or under
`RECIPROCITY_CACHE`) and Go's own build cache. Needs Go 1.24 or newer, on PATH or where the
official installer puts it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

GO_MODULE = Path(__file__).resolve().parent / "go"
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# The go.sum line of that version: a tampered or re-tagged module fails here.
PROMETHEUS_OPERATOR_SUM = "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s="
# A first run downloads modules and compiles kustomize (about two minutes on two cores).
GO_TIMEOUT = 900
# The official tarball's place: often on PATH only in interactive shells, not in CI's.
GO_INSTALL_DIR = Path("/usr/local/go/bin")


def cache_dir() -> Path:
    return Path(os.environ.get("RECIPROCITY_CACHE", Path.home() / ".cache" / "reciprocity"))


def go_env() -> dict[str, str]:
    return {
        **os.environ,
        "GOMODCACHE": str(cache_dir() / "go-mod"),
        # go.mod and go.sum are the pins: never rewrite them from a test.
        "GOFLAGS": "-mod=readonly -buildvcs=false",
    }


def go(*args: str, cwd: Path = GO_MODULE) -> str:
    executable = shutil.which("go") or shutil.which("go", path=str(GO_INSTALL_DIR))
    if executable is None:
        pytest.fail("go (1.24 or newer) is not installed: the deployment tests build their tools")
    result = subprocess.run(
        [executable, *args],
        cwd=cwd,
        env=go_env(),
        capture_output=True,
        text=True,
        timeout=GO_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"go {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """What `kubectl apply -k DIRECTORY` would send, as objects."""
    rendered = go("tool", "kustomize", "build", str(directory.resolve()))
    return [doc for doc in yaml.safe_load_all(rendered) if doc is not None]


def build_composeconfig(out_dir: Path) -> Path:
    binary = out_dir / "composeconfig"
    go("build", "-o", str(binary), "./composeconfig")
    return binary


def compose_config(binary: Path, compose_file: Path, profiles: str = "") -> dict[str, Any]:
    """The resolved project, as `docker compose config --format json` prints it.

    An empty environment apart from the profiles: the files must not need the user's."""
    result = subprocess.run(
        [str(binary), str(compose_file)],
        env={"COMPOSE_PROFILES": profiles},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"compose-go rejects {compose_file}:\n{result.stderr}")
    project: dict[str, Any] = json.loads(result.stdout)
    return project


def prometheus_operator_crds(workdir: Path) -> Path:
    """The directory of the Prometheus Operator's CRD manifests, at the pinned version."""
    # Outside any module, so that the download cannot touch tests/deploy/go/go.mod.
    out = go(
        "mod",
        "download",
        "-json",
        f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}",
        cwd=workdir,
    )
    info = json.loads(out)
    if info.get("Sum") != PROMETHEUS_OPERATOR_SUM:
        pytest.fail(f"{PROMETHEUS_OPERATOR} checksum {info.get('Sum')} != pinned one")
    return Path(info["Dir"]) / "example" / "prometheus-operator-crd"
