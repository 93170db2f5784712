"""`reciprocity demo` as `make demo` runs it off a terminal, its own fresh broker included: lines
are not wrapped, every seeded spam is alerted, it ends with a summary that says where the
worker's log is, and a healthy start logs no ERROR line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.devtools.generate import generate_traffic

pytestmark = pytest.mark.kafka


def test_the_demo_alerts_every_seeded_spam_and_sums_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--duration", "90", "--workdir", str(tmp_path)],
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        timeout=400,
        check=False,
    )  # fmt: skip
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    expected = {(a.rule, a.subject_id) for a in generate_traffic(7).expected if a.alert}
    for rule, subject in expected:
        assert any(rule in line and f" {subject}:" in line for line in out.splitlines()), (
            rule,
            subject,
        )
    # One alert, one line, however long (off a terminal nothing wraps at 80 columns).
    assert any(len(line) > 80 for line in out.splitlines())
    summary = next(line for line in out.splitlines() if "alerts (" in line)
    assert f"the worker's log: {tmp_path / 'worker.log'}" in summary
    assert out.rstrip().endswith("stopped.")
    log = (tmp_path / "worker.log").read_text()
    assert "[ERROR]" not in log, log[:3000]
