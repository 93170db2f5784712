"""MIDAS-R (Bhatia, Hooi, Yoon, Shin, Faloutsos, "MIDAS: Microcluster-Based Detector of
Anomalies in Edge Streams", AAAI 2020), written from the paper for the detection benchmark.

Each edge (u, v) arriving at time tick t updates six count-min sketches: the edge's, the
source's and the destination's *current* count a (decayed) and *total* count s (never
decayed). Its score is the largest of the three chi-squared statistics

    X(a, s, t) = ((a - s / t) * t)^2 / (s * (t - 1))        (0 when s == 0 or t == 1)

that compare the current count with the average per tick so far: a microcluster, a sudden
burst of similar edges, makes `a` far above `s / t`. MIDAS-R (the "relational" variant)
keeps part of the past in the current counts: when a new tick starts, every current count is
multiplied by `alpha` (the paper's decay factor; plain MIDAS resets them, alpha = 0), and it
scores nodes as well as edges, so many different sources converging on one destination
score high even though every single edge is new.

Parameters (the authors' reference implementation uses the same defaults):

- `rows` = 2 hash functions per sketch, `buckets` = 1024 counters per row. Estimates are the
  minimum over rows, so collisions only inflate counts.
- `alpha` = 0.5: the decay applied once per new tick *seen*, as in the paper's algorithm
  (a tick with no edges does not decay anything, the reference code behaves the same way).
  Decay is applied lazily (each cell remembers how many decays it has missed), so the cost per
  edge is O(rows) however many buckets there are.
- the tick length belongs to the caller (`MidasRStream`: one minute by default); ticks are
  numbered from 1 at the start of the stream.

Scores are not log-transformed (the later reference code returns log(1 + X)): a monotone
transform changes no ranking and no threshold comparison.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["CountMinSketch", "DecayingCountMinSketch", "MidasR", "MidasRStream", "chi_squared"]


def chi_squared(a: float, s: float, t: float) -> float:
    """The MIDAS anomaly score of a current count `a` against total `s` after `t` ticks."""
    if s == 0 or t <= 1:
        return 0.0
    return ((a - s / t) * t) ** 2 / (s * (t - 1))


class _Hasher:
    """`rows` bucket indices per key, from one salted BLAKE2b digest (seeded, stable)."""

    def __init__(self, rows: int, buckets: int, salt: str) -> None:
        self.rows = rows
        self.buckets = buckets
        self._salt = salt.encode()[:16]

    def indices(self, key: str) -> list[int]:
        digest = blake2b(key.encode(), digest_size=8 * self.rows, salt=self._salt).digest()
        return [
            int.from_bytes(digest[8 * r : 8 * r + 8], "little") % self.buckets
            for r in range(self.rows)
        ]


class CountMinSketch:
    """Counts per key, over-estimated only by collisions; the estimate is the row minimum."""

    def __init__(self, rows: int, buckets: int) -> None:
        self.cells = [[0.0] * buckets for _ in range(rows)]

    def add(self, idx: list[int], amount: float = 1.0) -> None:
        for row, i in zip(self.cells, idx, strict=True):
            row[i] += amount

    def estimate(self, idx: list[int]) -> float:
        return min(row[i] for row, i in zip(self.cells, idx, strict=True))


class DecayingCountMinSketch:
    """A count-min sketch whose every cell is multiplied by `alpha` at each `decay()`.

    Lazily: a cell stores its value and the decay epoch it was last brought up to date at.
    """

    def __init__(self, rows: int, buckets: int, alpha: float) -> None:
        self.alpha = alpha
        self.epoch = 0
        self.values = [[0.0] * buckets for _ in range(rows)]
        self.epochs = [[0] * buckets for _ in range(rows)]

    def decay(self) -> None:
        self.epoch += 1

    def _current(self, r: int, i: int) -> float:
        behind = self.epoch - self.epochs[r][i]
        value = self.values[r][i]
        if behind:
            if value:
                value *= self.alpha**behind
                self.values[r][i] = value
            self.epochs[r][i] = self.epoch
        return value

    def add(self, idx: list[int], amount: float = 1.0) -> None:
        for r, i in enumerate(idx):
            self.values[r][i] = self._current(r, i) + amount

    def estimate(self, idx: list[int]) -> float:
        return min(self._current(r, i) for r, i in enumerate(idx))


class MidasR:
    """MIDAS-R over a stream of (source, destination, tick) with non-decreasing ticks ≥ 1."""

    def __init__(
        self, rows: int = 2, buckets: int = 1024, alpha: float = 0.5, seed: int = 0
    ) -> None:
        if rows < 1 or buckets < 1:
            raise ValueError("rows and buckets must be positive")
        if not 0.0 <= alpha < 1.0:
            raise ValueError("alpha must be in [0, 1)")
        self.rows, self.buckets, self.alpha = rows, buckets, alpha
        self.tick = 1
        self._edge_hash = _Hasher(rows, buckets, f"e{seed}")
        self._source_hash = _Hasher(rows, buckets, f"s{seed}")
        self._destination_hash = _Hasher(rows, buckets, f"d{seed}")
        self._current = [DecayingCountMinSketch(rows, buckets, alpha) for _ in range(3)]
        self._total = [CountMinSketch(rows, buckets) for _ in range(3)]

    def score(self, source: str, destination: str, tick: int) -> float:
        """Insert the edge and return its anomaly score (the max of edge, source, destination)."""
        if tick < self.tick:
            raise ValueError(f"tick {tick} is before the current tick {self.tick}")
        if tick > self.tick:
            for sketch in self._current:
                sketch.decay()
            self.tick = tick
        keys = (
            self._edge_hash.indices(f"{source}\x00{destination}"),
            self._source_hash.indices(source),
            self._destination_hash.indices(destination),
        )
        best = 0.0
        for idx, current, total in zip(keys, self._current, self._total, strict=True):
            current.add(idx)
            total.add(idx)
            best = max(best, chi_squared(current.estimate(idx), total.estimate(idx), tick))
        return best


class MidasRStream:
    """MIDAS-R on timestamped edges: ticks of `tick_ms` counted from `origin_ms` (tick 1)."""

    def __init__(
        self,
        origin_ms: int,
        *,
        tick_ms: int = 60_000,
        rows: int = 2,
        buckets: int = 1024,
        alpha: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.origin_ms = origin_ms
        self.tick_ms = tick_ms
        self.core = MidasR(rows, buckets, alpha, seed)

    def score(self, source: str, destination: str, at_ms: int) -> float:
        tick = max(0, at_ms - self.origin_ms) // self.tick_ms + 1
        return self.core.score(source, destination, tick)

    def parameters(self) -> dict[str, object]:
        return {
            "rows": self.core.rows,
            "buckets": self.core.buckets,
            "alpha": self.core.alpha,
            "tick_seconds": self.tick_ms / 1000,
            "decay": "once per new tick seen (paper, Algorithm MIDAS-R)",
            "score": "max of edge, source and destination chi-squared statistics",
        }
