"""A real Prometheus for end-to-end tests: it scrapes the targets a test registers, every
second, and evaluates the given rule files every second."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from service.devtools.local_kafka import free_port

SCRAPE_INTERVAL_S = 1


class PrometheusServer:
    def __init__(self, workdir: Path, job: str, rule_files: Sequence[Path] = ()) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.log = workdir / "prometheus.log"
        # File discovery: targets can be added after start, once a test knows their ports.
        self.targets_file = workdir / "targets.json"
        self.targets: list[str] = []
        self._write_targets()
        config = {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "evaluation_interval": f"{SCRAPE_INTERVAL_S}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        # JSON is YAML, and needs no YAML library here.
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> PrometheusServer:
        executable = shutil.which("prometheus")
        if executable is None:
            raise FileNotFoundError(
                "prometheus is not installed: run scripts/install-system-packages"
            )
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self._url("/-/ready"), timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prometheus not ready in {timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def add_target(self, address: str) -> None:
        self.targets.append(address)
        self._write_targets()

    def _write_targets(self) -> None:
        groups = [{"targets": self.targets}] if self.targets else []
        partial = self.targets_file.with_suffix(".partial")
        partial.write_text(json.dumps(groups))
        partial.replace(self.targets_file)  # Prometheus never reads half a file

    def _url(self, path: str, **params: str) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.port}{path}{query}"

    def api(self, path: str, **params: str) -> Any:
        try:
            with urllib.request.urlopen(self._url(path, **params), timeout=30) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path} {params}: {exc.code} {exc.read().decode()}") from exc
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("/api/v1/query", query=expr)["result"]
        return result

    def query_range(
        self, expr: str, start: float, end: float, step: float = SCRAPE_INTERVAL_S
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api(
            "/api/v1/query_range", query=expr, start=str(start), end=str(end), step=str(step)
        )["result"]
        return result

    def wait_for(
        self,
        expr: str,
        accept: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 60,
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        result = self.query(expr)
        while not accept(result):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr} still {result} after {timeout} s")
            time.sleep(SCRAPE_INTERVAL_S / 2)
            result = self.query(expr)
        return result
