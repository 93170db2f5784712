"""Where a profiled worker's CPU time goes, grouped by what it is for.

    python -m bench.time_breakdown FILE.pstats    # the table for a cProfile output file

A group is either a part of our code, named by the functions it starts at ("anchors": the
stage-1 core is `Pipeline.actor_stage` and everything it calls), or a library, named by its
files. A function's own time goes to the innermost anchor above it, else to its own library;
built-in functions (orjson, blake2b, list methods) go wherever their callers go.

cProfile records callers one level up only, so the time of a function called from several
places is split in proportion to the time each caller spent in it, and each caller's share
above it likewise (gprof's assumption). Waiting in epoll is idle, not work: it is left out of
the percentages; socket system calls are a group of their own. cProfile's own overhead
inflates code with many small calls.
"""

from __future__ import annotations

import pstats
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Function = tuple[str, int, str]  # (file, line, name), as pstats keys them

STAGE1 = "stage-1 core: Pipeline.actor_stage, its detectors"
STAGE2 = "stage-2 core: Pipeline.target_stage, its detectors"
STAGE3 = "stage-3 core: Pipeline.requester_stage"
INGEST = "ingest: decode and validate the JSON"
WIRE = "stage messages: encode, decode"
COMMIT = "state commit: encode changelog values"
STATE_SENDS = "state: changelog records to the producer, store writes"
PROGRESS = "progress markers, skipped-message read-backs, stage clock"
METRICS = "metrics: ours (prometheus_client)"
FAUST_SENSORS = "metrics: Faust's sensors (monitor, Prometheus), per message"
SCRAPES = "metrics: /metrics scrapes (the benchmark's progress polls)"
FAUST_CONSUMER = "Faust consumer: fetch, dispatch, commit"
FAUST_OTHER = "Faust streams, agents, topics; mode"
AIOKAFKA_FETCH = "aiokafka: fetch, record parsing, protocol"
AIOKAFKA_PRODUCER = "aiokafka: producer, batches, sender"
EVENT_LOOP = "event loop (asyncio, selectors)"
GLUE = "our agents' loops (service/worker/app.py)"
STARTUP = "startup: imports"
OTHER = "other: standard library (weakref, typing, logging, enum, …)"
SOCKETS = "socket system calls: send, receive"
IDLE = "idle: waiting in epoll"

# (file path suffix, function name or "*") -> group; the innermost anchor wins.
ANCHORS: tuple[tuple[str, str, str], ...] = (
    ("", "<module>", STARTUP),  # a module's body runs once, at its import
    ("service/core/pipeline.py", "actor_stage", STAGE1),
    ("service/core/pipeline.py", "target_stage", STAGE2),
    ("service/core/pipeline.py", "requester_stage", STAGE3),
    ("service/core/decoding.py", "decode", INGEST),
    ("service/runtime/framing.py", "*", WIRE),
    ("service/runtime/tables.py", "commit", COMMIT),
    ("service/runtime/tables.py", "*", STATE_SENDS),
    ("service/runtime/sinks.py", "*", STATE_SENDS),
    ("service/runtime/progress.py", "*", PROGRESS),
    ("service/worker/workarounds.py", "*", PROGRESS),
    ("service/runtime/metrics.py", "*", METRICS),
    ("/faust/sensors/prometheus.py", "metrics_handler", SCRAPES),
    ("/faust/sensors/", "*", FAUST_SENSORS),
)
# Path fragment -> group for time no anchor claims; first match wins.
LIBRARIES: tuple[tuple[str, str], ...] = (
    ("/prometheus_client/", METRICS),
    ("/faust/transport/", FAUST_CONSUMER),
    ("/faust/", FAUST_OTHER),
    ("/mode/", FAUST_OTHER),
    ("/aiokafka/producer/", AIOKAFKA_PRODUCER),
    ("/aiokafka/", AIOKAFKA_FETCH),
    ("/asyncio/", EVENT_LOOP),
    ("/selectors.py", EVENT_LOOP),
    ("/service/", GLUE),
)
# Built-ins that are a group of their own wherever they are called from.
OWN_GROUPS = {
    "<method 'poll' of 'select.epoll' objects>": IDLE,
    "<method 'send' of '_socket.socket' objects>": SOCKETS,
    "<method 'recv' of '_socket.socket' objects>": SOCKETS,
    "<method 'recv_into' of '_socket.socket' objects>": SOCKETS,
}
_ANCHOR_GROUPS = frozenset(group for _, _, group in ANCHORS)
_PASSES = 4  # over the call graph in callers-first order
_REPOSITORY = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Breakdown:
    seconds: dict[str, float]  # group -> own seconds, idle included, largest first
    busy_seconds: float  # all but idle
    top_functions: list[tuple[str, float, str]]  # (function, own seconds, group), busiest first

    def share(self, group: str) -> float:
        return self.seconds.get(group, 0.0) / self.busy_seconds if self.busy_seconds else 0.0


def _is_builtin(function: Function) -> bool:
    return function[0] == "~"


def _anchor(function: Function) -> str | None:
    path, _, name = function
    for suffix, anchor_name, group in ANCHORS:
        if suffix in path and (anchor_name == "*" or anchor_name == name):
            return group
    return None


def _library(function: Function) -> str:
    path = function[0]
    for fragment, group in LIBRARIES:
        if fragment in path:
            return group
    return OTHER


def _label(function: Function) -> str:
    """`file:line(name)`, the file relative to site-packages, the standard library or us."""
    path, line, name = function
    if _is_builtin(function):
        return name
    path = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", path)
    path = path.removeprefix(f"{_REPOSITORY}/")
    return f"{path}:{line}({name})"


def breakdown(stats: dict[Function, Any]) -> Breakdown:
    """Group the own time of every function in `pstats.Stats(...).stats`."""
    anchors = {f: _anchor(f) for f in stats}
    shares: dict[Function, dict[str, float]] = {}
    callees: dict[Function, list[Function]] = defaultdict(list)
    for f, row in stats.items():
        group = anchors[f] or (OTHER if _is_builtin(f) else _library(f))
        shares[f] = {group: 1.0}
        for caller in row[4]:
            if caller != f:
                callees[caller].append(f)
    # Callers before callees: one pass would be exact without cycles; the cycles (through the
    # event loop, mostly) need a few more.
    order = _callers_first(stats, callees)
    for _ in range(_PASSES):
        for f in order:
            shares[f] = _shares_from_callers(f, stats, anchors, shares)
    seconds: dict[str, float] = defaultdict(float)
    top: list[tuple[str, float, str]] = []
    for f, (_, _, own, _, _) in stats.items():
        if f[0] == "~" and f[2] in OWN_GROUPS:
            seconds[OWN_GROUPS[f[2]]] += own
            if OWN_GROUPS[f[2]] != IDLE:
                top.append((_label(f), own, OWN_GROUPS[f[2]]))
            continue
        for group, share in shares[f].items():
            seconds[group] += own * share
        top.append((_label(f), own, max(shares[f].items(), key=lambda item: item[1])[0]))
    busy = sum(value for group, value in seconds.items() if group != IDLE)
    top.sort(key=lambda item: -item[1])
    ordered = dict(sorted(seconds.items(), key=lambda item: -item[1]))
    return Breakdown(ordered, busy, top[:25])


def _callers_first(
    stats: dict[Function, Any], callees: dict[Function, list[Function]]
) -> list[Function]:
    """Reverse post-order of a depth-first walk from the functions nobody calls."""
    roots = [f for f, row in stats.items() if not any(c != f for c in row[4])]
    seen: set[Function] = set()
    finished: list[Function] = []
    for root in [*roots, *stats]:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(callees[root]))]
        while stack:
            f, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                finished.append(f)
            elif child not in seen:
                seen.add(child)
                stack.append((child, iter(callees[child])))
    finished.reverse()
    return finished


def _shares_from_callers(
    f: Function,
    stats: dict[Function, Any],
    anchors: dict[Function, str | None],
    shares: dict[Function, dict[str, float]],
) -> dict[str, float]:
    anchor = anchors[f]
    if anchor is not None:
        return {anchor: 1.0}
    callers = {c: edge for c, edge in stats[f][4].items() if c != f and c in shares}
    weights = {c: edge[3] for c, edge in callers.items()}  # cumulative time of that edge
    if not any(weights.values()):
        weights = {c: edge[1] for c, edge in callers.items()}  # calls, when too fast to time
    total = sum(weights.values())
    builtin = _is_builtin(f)
    inherited: dict[str, float] = defaultdict(float)
    if total > 0:
        for c, weight in weights.items():
            for group, share in shares[c].items():
                # A library function keeps its own time unless an anchor is above it; a
                # built-in has no home of its own and goes wherever its callers go.
                if builtin or group in _ANCHOR_GROUPS:
                    inherited[group] += weight / total * share
    claimed = sum(inherited.values())
    if claimed < 1.0:
        inherited[OTHER if builtin else _library(f)] += 1.0 - claimed
    return dict(inherited)


def load(path: str) -> Breakdown:
    return breakdown(pstats.Stats(path).stats)  # type: ignore[attr-defined]


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.time_breakdown FILE.pstats")
    result = load(sys.argv[1])
    print(f"busy {result.busy_seconds:.1f} s (idle {result.seconds.get(IDLE, 0.0):.1f} s)")
    for group, value in result.seconds.items():
        if group != IDLE:
            print(f"{100 * result.share(group):5.1f} %  {value:7.2f} s  {group}")


if __name__ == "__main__":
    main()
