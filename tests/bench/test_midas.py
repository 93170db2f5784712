"""MIDAS-R (bench/midas.py) against an exact re-implementation and on a synthetic burst."""

from __future__ import annotations

from random import Random

import pytest

from bench.midas import MidasR, MidasRStream, chi_squared


def test_chi_squared_matches_the_paper_formula() -> None:
    # ((a - s/t) * t)^2 / (s * (t - 1)) with a=5, s=10, t=5: (3 * 5)^2 / 40
    assert chi_squared(5, 10, 5) == pytest.approx(5.625)
    assert chi_squared(3, 0, 9) == 0.0
    assert chi_squared(3, 3, 1) == 0.0


class _ExactMidasR:
    """MIDAS-R with exact dictionaries and eager decay: what the sketches approximate."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.tick = 1
        self.current: list[dict[str, float]] = [{}, {}, {}]
        self.total: list[dict[str, float]] = [{}, {}, {}]

    def score(self, source: str, destination: str, tick: int) -> float:
        if tick > self.tick:
            for counts in self.current:
                for key in counts:
                    counts[key] *= self.alpha
            self.tick = tick
        best = 0.0
        for i, key in enumerate((f"{source}>{destination}", source, destination)):
            self.current[i][key] = self.current[i].get(key, 0.0) + 1
            self.total[i][key] = self.total[i].get(key, 0.0) + 1
            best = max(best, chi_squared(self.current[i][key], self.total[i][key], tick))
        return best


def test_sketches_equal_exact_counts_without_collisions() -> None:
    rng = Random(5)
    midas = MidasR(rows=2, buckets=1 << 20, alpha=0.5, seed=1)
    exact = _ExactMidasR(alpha=0.5)
    tick = 1
    for _ in range(3000):
        tick += rng.random() < 0.1  # some ticks hold many edges, none is skipped twice
        if rng.random() < 0.02:
            tick += rng.randint(2, 30)  # idle stretches: decay is once per tick *seen*
        u, v = f"n{rng.randrange(40)}", f"n{rng.randrange(40)}"
        assert midas.score(u, v, tick) == pytest.approx(exact.score(u, v, tick), rel=1e-9)


def _background(rng: Random, ticks: range, nodes: int, per_tick: int) -> list[tuple[str, str, int]]:
    edges = []
    for t in ticks:
        for _ in range(per_tick):
            u, v = rng.sample(range(nodes), 2)
            edges.append((f"n{u}", f"n{v}", t))
    return edges


def test_a_burst_around_one_account_scores_far_above_background() -> None:
    rng = Random(7)
    stream = _background(rng, range(1, 201), nodes=300, per_tick=10)
    # At tick 150, sixty brand-new accounts follow one victim: a bought-followers microcluster.
    burst = [(f"fake{i}", "victim", 150) for i in range(60)]
    stream.sort(key=lambda e: e[2])
    at = next(i for i, e in enumerate(stream) if e[2] > 150)
    stream[at:at] = burst
    midas = MidasR(seed=3)  # the paper's defaults: 2 x 1024, alpha 0.5
    scores = [(midas.score(u, v, t), v.startswith("victim")) for u, v, t in stream]
    background = max(s for s, hit in scores if not hit)
    burst_scores = [s for s, hit in scores if hit]
    assert max(burst_scores) > 20 * background
    # Once the burst is under way every further edge of it stands out.
    assert min(burst_scores[10:]) > background


def test_a_steady_edge_is_not_anomalous_but_a_repeated_burst_is() -> None:
    midas = MidasRStream(origin_ms=0, tick_ms=60_000, seed=2)
    steady = [midas.score("a", "b", minute * 60_000) for minute in range(300)]
    assert steady[-1] < 5  # once per tick for 5 hours: current ~2, average 1 per tick
    burst = [midas.score("c", "d", 300 * 60_000 + i) for i in range(50)]
    assert burst[-1] > 1000
