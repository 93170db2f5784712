"""The container image, built from the Dockerfile by scripts/build-image (buildah, no engine)
and run without a container engine: its root file system mounted read-only with only the state
volume writable, and its entrypoint, user, working directory, environment and healthcheck taken
from the image's own config, as an engine would."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from service.devtools.generate import generate_traffic
from service.devtools.local_kafka import free_port
from tests.worker.harness import create_topics, http_get, produce, read_all

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parent.parent
IMAGE = "localhost/reciprocity:test"
BUILDAH = ["buildah", "--storage-driver", "vfs"]
STATE_DIR = "/var/lib/reciprocity"


def buildah(*args: str) -> str:
    result = subprocess.run(
        [*BUILDAH, *args], capture_output=True, text=True, timeout=600, check=True
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image() -> dict[str, Any]:
    """Builds the image from the working tree; returns its config."""
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run scripts/install-system-packages")
    if os.geteuid() != 0:
        pytest.fail("building and mounting the image needs root, as in CI")
    subprocess.run([str(REPO / "scripts" / "build-image"), IMAGE], check=True, timeout=1800)
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", IMAGE))["Docker"][
        "config"
    ]
    return config


class Container:
    """The image's root file system, mounted read-only, with a writable state volume."""

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.root = workdir / "root"
        self.volume = workdir / "state"
        self.log = workdir / "container.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._mounts: list[Path] = []
        self._container = ""

    def __enter__(self) -> Container:
        self._container = buildah("from", "--quiet", IMAGE)
        rootfs = buildah("mount", self._container)
        self.root.mkdir()
        self.volume.mkdir()
        uid, gid = self.config["User"].split(":")
        os.chown(self.volume, int(uid), int(gid))
        self._mount(["--bind", rootfs], self.root)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(self.root)], check=True)
        self._mount(["--bind", str(self.volume)], self.root / STATE_DIR.lstrip("/"))
        self._mount(["--rbind", "/dev"], self.root / "dev")
        self._mount(["--rbind", "/proc"], self.root / "proc")
        return self

    def _mount(self, options: list[str], target: Path) -> None:
        subprocess.run(["mount", *options, str(target)], check=True)
        self._mounts.append(target)

    def __exit__(self, *exc: object) -> None:
        self.stop()
        for target in reversed(self._mounts):
            subprocess.run(["umount", "--recursive", "--lazy", str(target)], check=False)
        if self._container:
            subprocess.run([*BUILDAH, "umount", self._container], check=False)
            subprocess.run([*BUILDAH, "rm", self._container], check=False, capture_output=True)

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run as the image's user, in its working directory, inside the root."""
        return [
            "/usr/sbin/chroot",
            f"--userspec={self.config['User']}",
            "--groups=",
            str(self.root),
            "/bin/sh",
            "-c",
            'cd "$0" && exec "$@"',
            self.config["WorkingDir"],
            *argv,
        ]

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(item.split("=", 1) for item in self.config["Env"])
        return {**env, **extra}

    def run(self, env: dict[str, str]) -> Container:
        """The image's entrypoint, as `docker run` would start it."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(self.config["Entrypoint"]),
                env=self.environment(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def healthcheck(self, env: dict[str, str]) -> int:
        test = self.config["Healthcheck"]["Test"]
        assert test[0] == "CMD", test
        result = subprocess.run(
            self.command(test[1:]), env=self.environment(env), timeout=30, check=False
        )
        return result.returncode

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(timeout=30)


@pytest.fixture
def container(image: dict[str, Any], tmp_path: Path) -> Iterator[Container]:
    with Container(image, tmp_path) as running:
        yield running


def test_image_config(image: dict[str, Any]) -> None:
    assert image["Entrypoint"] == ["reciprocity", "worker"]
    assert image["User"] != "" and not image["User"].startswith("0")
    assert STATE_DIR in image["Volumes"]
    assert "6066/tcp" in image["ExposedPorts"]
    assert "/healthz" in " ".join(image["Healthcheck"]["Test"])


def test_image_detects_injected_spam_on_a_read_only_root(kafka: str, container: Container) -> None:
    suffix = uuid.uuid4().hex[:8]
    events, alerts = f"events-{suffix}", f"alerts-{suffix}"
    create_topics(kafka, [events], partitions=1)
    port = free_port()
    env = {
        "RECIPROCITY_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "RECIPROCITY_TOPICS__EVENTS": events,
        "RECIPROCITY_TOPICS__ALERTS": alerts,
        "RECIPROCITY_TOPICS__DEAD_LETTERS": f"dlq-{suffix}",
        "RECIPROCITY_TOPICS__PARTITIONS": "1",
        "RECIPROCITY_WORKER__APP_ID": f"image-{suffix}",
        "RECIPROCITY_WORKER__WEB_PORT": str(port),
        "RECIPROCITY_WORKER__STORE": "rocksdb://",
    }
    container.run(env)
    deadline = time.monotonic() + 120
    while http_get(port, "/readyz")[0] != 200:
        assert container.process is not None
        if container.process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"worker not ready: {container.log.read_text()[-3000:]}")
        time.sleep(0.5)

    assert http_get(port, "/healthz")[0] == 200
    assert container.healthcheck(env) == 0
    traffic = generate_traffic(7)
    produce(kafka, events, [orjson.dumps(event) for event in traffic.events])
    wanted = {(e.rule, e.subject_id) for e in traffic.expected if e.alert}
    seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 300
    while not wanted <= seen and time.monotonic() < deadline:
        time.sleep(2)
        with contextlib.suppress(subprocess.CalledProcessError):
            seen = {(a["rule"], a["subject_id"]) for a in read_all(kafka, alerts)}
    assert wanted <= seen, (wanted - seen, container.log.read_text()[-3000:])

    status, body = http_get(port, "/metrics")
    assert status == 200
    assert b"reciprocity_alerts_total{" in body
    # RocksDB wrote its tables into the volume, the only writable place.
    assert any(container.volume.rglob("*.sst")) or any(container.volume.rglob("CURRENT"))
