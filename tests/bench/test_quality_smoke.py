"""A small run of the detection-quality benchmark (bench/quality.py), so it cannot rot.

One run on a tiny synthetic stand-in written in the Higgs files' format (always runs), one on
a slice of the real Higgs week when ../shared/data is present. Structure and "an injected
attack is found" are checked; no figure or timing is.
"""

from __future__ import annotations

import gc
import gzip
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from random import Random
from typing import Any

import orjson
import pytest

from bench.higgs import ACTIVITY_FILE, DEFAULT_DATA_DIR, GRAPH_FILE
from bench.quality import QUICK, RULES, main, run_benchmark

WEEK_START = 1341100972  # the Higgs week's first second
HIGGS_ACTIVITY_SHA256 = "901b199716a23b0fc0371705e3ae9941b5c9493277aec65456abc4988674ad79"


def _write_stand_in(directory: Path) -> None:
    """30 hours of Higgs-format activity among 600 accounts and a follower graph of them.

    One tweet mentions six accounts at once: with one text per tweet it is six mention events
    with the same text and second, one send, which duplicate_reply_spam must not flag (it did
    before the contract made one message one send: most of its false alerts on real data).
    """
    rng = Random(4)
    lines = []
    for _ in range(6000):
        a, b = rng.sample(range(1, 601), 2)
        t = WEEK_START + rng.randrange(30 * 3600)
        code = rng.choice(("RT", "RT", "MT", "RE"))
        lines.append(f"{a} {b} {t} {code}")
        if code == "RE":
            lines.append(f"{a} {b} {t} MT")  # a reply is listed as a mention too
    multi_at = WEEK_START + 10 * 3600
    lines += [f"7 {b} {multi_at} MT" for b in range(100, 106)]
    rng.shuffle(lines)  # the real file is not sorted either
    (directory / ACTIVITY_FILE).write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    edges = {(a, b) for a in range(1, 601) for b in rng.sample(range(1, 601), 15) if a != b}
    (directory / GRAPH_FILE).write_bytes(
        gzip.compress("".join(f"{a} {b}\n" for a, b in sorted(edges)).encode())
    )


def _check_structure(result: dict[str, Any]) -> None:
    assert result["machine"]["platform"]
    for name in ("activity", "graph"):
        assert len(result["data"][name]["sha256"]) == 64
    assert "text_model" in result and "follow_model" in result
    seed = result["per_seed"][0]
    assert set(seed["untouched"]["false_alerts_per_day"]) == set(RULES)
    assert seed["injected"]["attacks"], "no attack was injected"
    assert set(result["summary"]["rules"]) == set(RULES)
    assert "matched" in result["summary"]["midas_r"]
    assert result["summary"]["purchases"]


def _found(result: dict[str, Any], rule: str) -> bool:
    attacks = result["per_seed"][0]["injected"]["attacks"]
    return any(a["detected"] for a in attacks if a["rule"] == rule)


@pytest.fixture
def restore_gc() -> Iterator[None]:
    """`main` tunes the garbage collector as the CLI does; give the test session its own back."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_quality_benchmark_on_a_stand_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_stand_in(tmp_path)
    out = tmp_path / "quality.json"
    main(["--quick", "--data-dir", str(tmp_path), "--out", str(out), "--follow-share", "0.1"])
    printed = capsys.readouterr().out
    assert "follower_spike" in printed and "MIDAS-R" in printed
    result = orjson.loads(out.read_bytes())
    _check_structure(result)
    for rule in RULES:  # the quick grid injects one attack per rule; each must be found
        assert _found(result, rule), rule
    untouched = result["per_seed"][0]["untouched"]
    assert untouched["false_alerts"]["duplicate_reply_spam"] == 0
    assert untouched["duplicate_reply_spam_single_tweet"] == 0
    # MIDAS-R stays within the budget it was calibrated to.
    matched = result["per_seed"][0]["midas_r"]["matched"]
    assert matched["untouched_alerts"] <= matched["budget_alerts"]


@pytest.mark.skipif(
    not (DEFAULT_DATA_DIR / ACTIVITY_FILE).exists(), reason="../shared/data/higgs is absent"
)
def test_quality_benchmark_on_a_slice_of_the_real_week() -> None:
    result = run_benchmark(replace(QUICK, hours=20.0, warmup_hours=2.0))
    _check_structure(result)
    assert result["data"]["activity"]["sha256"] == HIGGS_ACTIVITY_SHA256
    assert _found(result, "follower_spike")
    assert _found(result, "unsolicited_retweet_request")
