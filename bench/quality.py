"""Detection quality on real traffic: the Higgs Twitter week with injected attacks.

    .venv/bin/python -m bench.quality [--seeds 3] [--quick] [--out bench/results/quality.json]

For each seed:

1. The untouched week: the real Higgs retweets, mentions and replies (sorted by time) plus
   organic follows drawn from the real follower-graph fragment (`bench/higgs.py` says how,
   with what texts and at what rate), replayed through the same core the worker uses
   (`service.core.replay.Replayer`, default settings). Every alert here is a false alert: false
   alerts per day, per rule.
2. The same week with attacks injected (`bench/attacks.py`: follower purchases of 50 / 200 /
   1000 fake accounts over 10 min / 2 h / 24 h, fresh or dormant, with or without camouflage
   follows; stranger retweet-request campaigns; churners; duplicate repliers), built by
   `devtools.generate`'s scenario builders. An attack is detected when its rule alerts on its
   subject at or after the attack start; recall per rule is the share detected; the delay is
   the first such alert's `window_end` (the event time of the event that triggered it) minus
   the attack start, in event time.
3. MIDAS-R (`bench/midas.py`) scores every follow edge (follower -> followed) of both runs.
   An account is flagged when one of its incoming follow edges scores above the threshold;
   flags of one account less than 10 min apart are one alert (follower_spike's episode rule).
   The threshold is set on the untouched week so that MIDAS-R raises no more alerts there
   than follower_spike did (the same false-alert budget), then applied to the injected run.
   Recall at 1 and 10 false alerts per day is reported too.

Seeds change the organic follows, the texts, the attacks' accounts, times and fakes; the Higgs
activity is the same in every seed. The table shows mean ± sd over seeds; the JSON keeps every
seed's figures, every attack and every false alert.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from random import Random
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.attacks import QUICK_GRID, Attack, Grid, World, build_attacks
from bench.higgs import (
    ACTIVITY_FILE,
    DEFAULT_DATA_DIR,
    GRAPH_FILE,
    HOUR_MS,
    Activity,
    Graph,
    OrganicModel,
    TweetText,
    load_activity,
    load_graph,
    organic_rows,
    row_event,
    sha256,
)
from bench.midas import MidasRStream
from bench.report import report
from service.cli import tune_gc
from service.core.models import Event, EventType, parse_timestamp_ms
from service.core.replay import Replayer
from service.devtools.generate import finalize_events
from service.settings import DetectionSettings

RULES = ("follower_spike", "unsolicited_retweet_request", "follow_churn", "duplicate_reply_spam")
SPIKE_WINDOW_MS = DetectionSettings().follower_spike.window_seconds * 1000
EXTRA_BUDGETS_PER_DAY = (1.0, 10.0)
_RANK = {"low": 1, "medium": 2, "high": 3}
DEFAULT_OUT = Path("bench/results/quality.json")

TEXT_MODEL = (
    "Higgs has no text. Each tweet (one author, one second) gets one text: the @handles it "
    "addresses plus a seeded sentence from the generator's organic word lists, never "
    "repeated by an author and never asking for a share; a tweet mentioning k accounts is k "
    "events with the same text."
)
TEXT_MODEL_DISTINCT = (
    "Higgs has no text. Every reply and mention event gets its own seeded sentence from "
    "the generator's organic word lists (never repeated by an author, never asking for a "
    "share), even when several events come from one tweet."
)


@dataclass(frozen=True)
class Options:
    seeds: int = 3
    first_seed: int = 1
    hours: float | None = None  # None: the whole week
    grid: Grid = field(default_factory=Grid)
    follow_share: float = 0.02
    tweet_text: TweetText = "shared"
    organic: OrganicModel = "harder"
    warmup_hours: float = 24.0
    data_dir: Path = DEFAULT_DATA_DIR
    midas_rows: int = 2
    midas_buckets: int = 1024
    midas_alpha: float = 0.5
    midas_tick_seconds: int = 60
    quick: bool = False


QUICK = Options(seeds=1, hours=24.0, grid=QUICK_GRID, warmup_hours=3.0, quick=True)


# ------------------------------------------------------------------------------- replaying


@dataclass
class AlertRecord:
    rule: str
    subject_id: str
    severity: str
    at_ms: int  # window_end: event time of the triggering event
    episode_ms: int
    count: int | None
    single_tweet: bool | None  # duplicate_reply_spam: every sampled event is one Higgs tweet
    named: tuple[str, ...] | None = None  # follower_spike: the followers it judged bought

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Run:
    events: int
    seconds: float
    alerts: list[AlertRecord]
    follows: list[tuple[int, str, str, float]]  # (ms, follower, followed, MIDAS-R score)
    outcomes: dict[str, int]


def _tweet_key(event_id: str) -> str | None:
    # Higgs events are h<seconds>-<author>-<target>-<kind>: one tweet = one (seconds, author).
    if not event_id.startswith("h"):
        return None
    parts = event_id.split("-")
    return f"{parts[0]}-{parts[1]}" if len(parts) == 4 else None


def _record(alert: Any) -> AlertRecord:
    evidence = alert.evidence
    single = None
    if alert.rule == "duplicate_reply_spam":
        keys = {_tweet_key(i) for i in evidence.get("sample_event_ids", [])}
        single = len(keys) == 1 and None not in keys
    return AlertRecord(
        alert.rule,
        alert.subject_id,
        alert.severity.value,
        parse_timestamp_ms(alert.window_end),
        parse_timestamp_ms(evidence["episode_started_at"]),
        evidence.get("count"),
        single,
        tuple(alert.related_ids) if alert.rule == "follower_spike" else None,
    )


def replay(events: Iterable[Event], options: Options, origin_ms: int, clock_ms: int) -> Run:
    """The detection core over `events` (sorted), with MIDAS-R scoring every follow edge."""
    replayer = Replayer(DetectionSettings(), lambda: clock_ms)
    midas = MidasRStream(
        origin_ms,
        tick_ms=options.midas_tick_seconds * 1000,
        rows=options.midas_rows,
        buckets=options.midas_buckets,
        alpha=options.midas_alpha,
    )
    alerts: list[AlertRecord] = []
    follows: list[tuple[int, str, str, float]] = []
    n = 0
    started = time.perf_counter()
    follow = EventType.FOLLOW
    for event in events:
        n += 1
        if event.type is follow and event.target_id and event.target_id != event.actor_id:
            score = midas.score(event.actor_id, event.target_id, event.occurred_at)
            follows.append((event.occurred_at, event.actor_id, event.target_id, score))
        for alert in replayer.submit(event):
            alerts.append(_record(alert))
    for alert in replayer.flush():
        alerts.append(_record(alert))
    return Run(n, time.perf_counter() - started, alerts, follows, dict(replayer.stats.outcomes))


# --------------------------------------------------------------------------------- MIDAS-R


def _episode_delta(times: list[int], x: int, gap_ms: int) -> int:
    """Change in episode count when flag time x joins the sorted flag times of one account."""
    k = bisect.bisect_left(times, x)
    prev = times[k - 1] if k > 0 else None
    nxt = times[k] if k < len(times) else None
    if prev is None and nxt is None:
        return 1
    if prev is None:
        assert nxt is not None
        return int(nxt - x > gap_ms)
    if nxt is None:
        return int(x - prev > gap_ms)
    return int(x - prev > gap_ms) + int(nxt - x > gap_ms) - int(nxt - prev > gap_ms)


def calibrate(follows: Sequence[tuple[int, str, str, float]], budget: int, gap_ms: int) -> float:
    """The lowest threshold reached by lowering it from the top score while the alerts (flag
    episodes per account) stay within `budget`. Flagged means score > threshold."""
    order = sorted(range(len(follows)), key=lambda i: -follows[i][3])
    flagged: dict[str, list[int]] = defaultdict(list)
    episodes = 0
    i = 0
    while i < len(order):
        score = follows[order[i]][3]
        j = i
        while j < len(order) and follows[order[j]][3] == score:
            at, _, dst, _ = follows[order[j]]
            times = flagged[dst]
            episodes += _episode_delta(times, at, gap_ms)
            bisect.insort(times, at)
            j += 1
        if episodes > budget:
            return score
        i = j
    return -1.0  # the budget allows flagging every edge


def midas_episodes(
    follows: Sequence[tuple[int, str, str, float]], threshold: float, gap_ms: int
) -> dict[str, list[int]]:
    """Per flagged account, the start of each alert (flag episode)."""
    last: dict[str, int] = {}
    starts: dict[str, list[int]] = defaultdict(list)
    for at, _, dst, score in follows:
        if score <= threshold:
            continue
        if dst not in last or at - last[dst] > gap_ms:
            starts[dst].append(at)
        last[dst] = at
    return starts


def _midas_on_attacks(
    follows: Sequence[tuple[int, str, str, float]],
    threshold: float,
    attacks: Sequence[Attack],
) -> list[dict[str, object]]:
    first_flag: dict[str, list[int]] = defaultdict(list)
    for at, _, dst, score in follows:
        if score > threshold:
            first_flag[dst].append(at)
    out = []
    for attack in attacks:
        hits = [t for t in first_flag.get(attack.subject_id, []) if t >= attack.start_ms]
        out.append(
            {
                "attack_id": attack.attack_id,
                "detected": bool(hits),
                "delay_s": (min(hits) - attack.start_ms) / 1000 if hits else None,
            }
        )
    return out


# ------------------------------------------------------------------------------ evaluation


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _peak_follows(follows: Sequence[tuple[int, str, str, float]]) -> dict[str, object]:
    """The busiest 10 minutes of organic follower gain of any account."""
    times: dict[str, list[int]] = defaultdict(list)
    for at, _, dst, _ in follows:
        times[dst].append(at)
    best, who = 0, None
    for dst, ts in times.items():
        left = 0
        for right, at in enumerate(ts):
            while ts[left] <= at - SPIKE_WINDOW_MS:
                left += 1
            if right - left + 1 > best:
                best, who = right - left + 1, dst
    most = max(times, key=lambda dst: len(times[dst]), default=None)
    return {
        "max_follows_in_10min": best,
        "account": who,
        "most_followed_account": most,
        "its_follows_in_run": len(times[most]) if most is not None else 0,
        "follows": len(follows),
    }


def _evaluate_attacks(
    alerts: Sequence[AlertRecord], attacks: Sequence[Attack]
) -> list[dict[str, Any]]:
    by_key: dict[tuple[str, str], list[AlertRecord]] = defaultdict(list)
    for alert in alerts:
        by_key[(alert.rule, alert.subject_id)].append(alert)
    out = []
    for attack in attacks:
        hits = [
            a
            for a in by_key.get((attack.rule, attack.subject_id), [])
            if a.at_ms >= attack.start_ms
        ]
        row = attack.to_json()
        row["detected"] = bool(hits)
        row["delay_s"] = (min(a.at_ms for a in hits) - attack.start_ms) / 1000 if hits else None
        row["max_severity"] = max(
            (a.severity for a in hits), key=lambda sev: _RANK[sev], default=None
        )
        if attack.kind == "follower_purchase" and hits:
            row["naming"] = _naming(hits, attack)
        out.append(row)
    return out


def _naming(hits: Sequence[AlertRecord], attack: Attack) -> dict[str, int]:
    """The followers the purchase's alerts named, against its fakes (`generate` names them
    `<attack id>-fake-…`). An alert can name only fakes that have followed by then, at most
    100 (the contract): `seen` adds up min(100, fakes followed by its time) over the alerts;
    `namable` is min(fakes, 100 per alert) for the union of what they named."""
    prefix = attack.fake_prefix or f"{attack.attack_id}-fake-"
    times = sorted(
        int(str(e["occurred_at"]))
        for e in attack.events
        if e.get("target_id") == attack.subject_id and str(e["actor_id"]).startswith(prefix)
    )
    named = fakes_named = seen = 0
    union: set[str] = set()
    for alert in hits:
        names = set(alert.named or ())
        union |= names
        named += len(names)
        fakes_named += sum(1 for name in names if name.startswith(prefix))
        seen += min(100, bisect.bisect_right(times, alert.at_ms))
    size = int(str(attack.variant["fakes"]))
    return {
        "named": named,
        "fakes_named": fakes_named,
        "seen": seen,
        "union_fakes_named": sum(1 for name in union if name.startswith(prefix)),
        "namable": min(size, 100 * len(hits)),
    }


def _unexplained(
    injected: Sequence[AlertRecord], untouched: Sequence[AlertRecord], attacks: Sequence[Attack]
) -> dict[str, dict[str, int]]:
    """Injected-run alerts no attack explains, split into those the untouched week had too and
    new ones (collateral of the injections, e.g. on camouflage targets)."""
    explained = {(a.rule, a.subject_id) for a in attacks}
    before = {(a.rule, a.subject_id, a.at_ms) for a in untouched}
    out: dict[str, dict[str, int]] = {rule: {"as_untouched": 0, "new": 0} for rule in RULES}
    for alert in injected:
        if (alert.rule, alert.subject_id) in explained:
            continue
        kind = "as_untouched" if (alert.rule, alert.subject_id, alert.at_ms) in before else "new"
        out[alert.rule][kind] += 1
    return out


def _merge(organic: list[Event], injected: list[Event]) -> Iterator[Event]:
    def key(e: Event) -> tuple[int, str]:
        return (e.occurred_at, e.event_id)

    return heapq.merge(organic, injected, key=key)


def run_seed(
    seed: int,
    activity: Activity,
    graph: Graph,
    world: World,
    options: Options,
    log: Callable[[str], None],
) -> dict[str, object]:
    days = activity.days
    clock_ms = activity.end_ms + HOUR_MS
    started = time.perf_counter()
    rows = organic_rows(
        activity,
        graph,
        seed=seed,
        follow_share=options.follow_share,
        tweet_text=options.tweet_text,
        model=options.organic,
    )
    organic = [row_event(r) for r in rows]
    del rows
    built = time.perf_counter() - started
    log(f"seed {seed}: {len(organic):,} organic events built in {built:.1f} s")

    untouched = replay(organic, options, activity.start_ms, clock_ms)
    log(f"seed {seed}: untouched week replayed in {untouched.seconds:.1f} s")

    attacks, skipped = build_attacks(world, options.grid, seed)
    raw = [e for attack in attacks for e in attack.events]
    injected_events = [
        Event.model_validate(e)
        for e in finalize_events(raw, id_prefix=f"q{seed}-", rng=Random(f"{seed}/format"))
    ]
    injected = replay(_merge(organic, injected_events), options, activity.start_ms, clock_ms)
    log(
        f"seed {seed}: {len(attacks)} attacks ({len(injected_events):,} events) replayed in "
        f"{injected.seconds:.1f} s"
    )

    # Our false alerts: everything the untouched week raised.
    fa_by_rule = Counter(a.rule for a in untouched.alerts)
    episodes_by_rule = Counter(
        (a.rule)
        for a in {(a.rule, a.subject_id, a.episode_ms): a for a in untouched.alerts}.values()
    )
    dup_single = sum(1 for a in untouched.alerts if a.single_tweet)

    attack_rows = _evaluate_attacks(injected.alerts, attacks)

    # MIDAS-R at our follower_spike false-alert budget, and at fixed budgets.
    purchases = [a for a in attacks if a.kind == "follower_purchase"]
    budgets: dict[str, int] = {"matched": fa_by_rule["follower_spike"]}
    for per_day in EXTRA_BUDGETS_PER_DAY:
        budgets[f"{per_day:g}/day"] = round(per_day * days)
    midas: dict[str, object] = {}
    for name, budget in budgets.items():
        threshold = calibrate(untouched.follows, budget, SPIKE_WINDOW_MS)
        calib = midas_episodes(untouched.follows, threshold, SPIKE_WINDOW_MS)
        on_attacks = _midas_on_attacks(injected.follows, threshold, purchases)
        subjects = {a.subject_id for a in purchases}
        collateral = midas_episodes(injected.follows, threshold, SPIKE_WINDOW_MS)
        midas[name] = {
            "budget_alerts": budget,
            "threshold": threshold,
            "untouched_alerts": sum(len(v) for v in calib.values()),
            "untouched_alerts_per_day": sum(len(v) for v in calib.values()) / days,
            "injected_alerts_on_other_accounts": sum(
                len(v) for k, v in collateral.items() if k not in subjects
            ),
            "attacks": on_attacks,
        }
    top_scores = sorted((f[3] for f in untouched.follows), reverse=True)[:5]

    return {
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "untouched": {
            "events": untouched.events,
            "replay_seconds": round(untouched.seconds, 1),
            "outcomes": untouched.outcomes,
            "false_alerts": {rule: fa_by_rule[rule] for rule in RULES},
            "false_alert_episodes": {rule: episodes_by_rule[rule] for rule in RULES},
            "false_alerts_per_day": {rule: fa_by_rule[rule] / days for rule in RULES},
            "false_alerts_per_day_all_rules": sum(fa_by_rule.values()) / days,
            "duplicate_reply_spam_single_tweet": dup_single,
            "organic_follow_peak": _peak_follows(untouched.follows),
            "midas_top_scores": top_scores,
            "alerts": [a.to_json() for a in untouched.alerts],
        },
        "injected": {
            "events": injected.events,
            "injected_events": len(injected_events),
            "replay_seconds": round(injected.seconds, 1),
            "outcomes": injected.outcomes,
            "skipped_attacks": skipped,
            "unexplained_alerts": _unexplained(injected.alerts, untouched.alerts, attacks),
            "attacks": attack_rows,
        },
        "midas_r": midas,
    }


# ----------------------------------------------------------------------------- aggregation


def _mean_sd(values: Sequence[float]) -> dict[str, float | int] | None:
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def _rule_figures(rows: Sequence[dict[str, Any]], designed_only: bool = False) -> dict[str, Any]:
    if designed_only:
        rows = [r for r in rows if r["expected_by_design"]]
    delays = [r["delay_s"] for r in rows if r["detected"]]
    return {
        "attacks": len(rows),
        "detected": sum(1 for r in rows if r["detected"]),
        "recall": (sum(1 for r in rows if r["detected"]) / len(rows)) if rows else None,
        "median_delay_s": statistics.median(delays) if delays else None,
        "p90_delay_s": _quantile(delays, 0.9) if delays else None,
    }


def summarize(per_seed: Sequence[dict[str, Any]], days: float) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for rule in RULES:
        per = [
            _rule_figures([r for r in s["injected"]["attacks"] if r["rule"] == rule])
            for s in per_seed
        ]
        designed = [
            _rule_figures([r for r in s["injected"]["attacks"] if r["rule"] == rule], True)
            for s in per_seed
        ]
        rules[rule] = {
            "attacks_per_seed": _mean_sd([p["attacks"] for p in per]),
            "recall": _mean_sd([p["recall"] for p in per if p["recall"] is not None]),
            "recall_designed": _mean_sd([p["recall"] for p in designed if p["recall"] is not None]),
            "designed_attacks_per_seed": _mean_sd([p["attacks"] for p in designed]),
            "false_alerts_per_day": _mean_sd(
                [s["untouched"]["false_alerts_per_day"][rule] for s in per_seed]
            ),
            "median_delay_s": _mean_sd(
                [p["median_delay_s"] for p in per if p["median_delay_s"] is not None]
            ),
            "p90_delay_s": _mean_sd(
                [p["p90_delay_s"] for p in per if p["p90_delay_s"] is not None]
            ),
        }
    all_rules = _mean_sd([s["untouched"]["false_alerts_per_day_all_rules"] for s in per_seed])
    precisions, recalls_named, recalls_seen = [], [], []
    for s in per_seed:
        namings = [r["naming"] for r in s["injected"]["attacks"] if r.get("naming")]
        named = sum(n["named"] for n in namings)
        if named:
            found = sum(n["fakes_named"] for n in namings)
            precisions.append(found / named)
            recalls_named.append(
                sum(n["union_fakes_named"] for n in namings) / sum(n["namable"] for n in namings)
            )
            recalls_seen.append(found / max(1, sum(n["seen"] for n in namings)))
    naming = {
        "precision": _mean_sd(precisions),
        "recall": _mean_sd(recalls_named),
        "recall_of_followed_by_then": _mean_sd(recalls_seen),
    }

    # Follower purchases per variant, ours vs MIDAS-R at each budget.
    budgets = list(per_seed[0]["midas_r"]) if per_seed else []
    cells: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in per_seed:
        midas_by_budget = {
            b: {m["attack_id"]: m for m in s["midas_r"][b]["attacks"]} for b in budgets
        }
        for r in s["injected"]["attacks"]:
            if r["kind"] != "follower_purchase":
                continue
            v = r["variant"]
            key: tuple[Any, ...] = (v["fakes"], v["span"], v["accounts"], v["camouflage"])
            cell = cells.setdefault(
                key,
                {"ours": defaultdict(list), "delays": [], "peaks": [], "midas": {}},
            )
            cell["ours"][s["seed"]].append(r["detected"])
            cell["peaks"].append(r["peak_10min"])
            if r["detected"]:
                cell["delays"].append(r["delay_s"])
            for b in budgets:
                m = midas_by_budget[b][r["attack_id"]]
                mc = cell["midas"].setdefault(b, {"hits": defaultdict(list), "delays": []})
                mc["hits"][s["seed"]].append(m["detected"])
                if m["detected"]:
                    mc["delays"].append(m["delay_s"])
    purchases = []
    for key, cell in cells.items():
        row: dict[str, Any] = {
            "fakes": key[0],
            "span": key[1],
            "accounts": key[2],
            "camouflage": key[3],
            "peak_10min_mean": statistics.fmean(cell["peaks"]),
            "ours_recall": _mean_sd([sum(h) / len(h) for h in cell["ours"].values()]),
            "ours_median_delay_s": statistics.median(cell["delays"]) if cell["delays"] else None,
            "midas_r": {},
        }
        for b, mc in cell["midas"].items():
            row["midas_r"][b] = {
                "recall": _mean_sd([sum(h) / len(h) for h in mc["hits"].values()]),
                "median_delay_s": statistics.median(mc["delays"]) if mc["delays"] else None,
            }
        purchases.append(row)

    midas_budgets = {}
    for b in budgets:
        recalls, designed_recalls, thresholds, fa, delays, other = [], [], [], [], [], []
        for s in per_seed:
            m = s["midas_r"][b]
            hits = {x["attack_id"]: x for x in m["attacks"]}
            rows = [r for r in s["injected"]["attacks"] if r["kind"] == "follower_purchase"]
            if rows:
                recalls.append(sum(hits[r["attack_id"]]["detected"] for r in rows) / len(rows))
                des = [r for r in rows if r["expected_by_design"]]
                if des:
                    designed_recalls.append(
                        sum(hits[r["attack_id"]]["detected"] for r in des) / len(des)
                    )
                ds = [
                    hits[r["attack_id"]]["delay_s"]
                    for r in rows
                    if hits[r["attack_id"]]["detected"]
                ]
                if ds:
                    delays.append((statistics.median(ds), _quantile(ds, 0.9)))
            thresholds.append(m["threshold"])
            fa.append(m["untouched_alerts_per_day"])
            other.append(m["injected_alerts_on_other_accounts"] / days)
        midas_budgets[b] = {
            "threshold": _mean_sd(thresholds),
            "false_alerts_per_day": _mean_sd(fa),
            "recall": _mean_sd(recalls),
            "recall_designed": _mean_sd(designed_recalls),
            "median_delay_s": _mean_sd([d[0] for d in delays]),
            "p90_delay_s": _mean_sd([d[1] for d in delays]),
            "injected_run_alerts_per_day_on_other_accounts": _mean_sd(other),
        }
    others: dict[tuple[str, str], dict[str, Any]] = {}
    for s in per_seed:
        for r in s["injected"]["attacks"]:
            if r["kind"] == "follower_purchase":
                continue
            label = ", ".join(f"{k} {v}" for k, v in r["variant"].items() if k != "replicate")
            cell = others.setdefault(
                (r["kind"], label), {"hits": defaultdict(list), "delays": [], "severity_ok": 0}
            )
            cell["hits"][s["seed"]].append(r["detected"])
            if r["detected"]:
                cell["delays"].append(r["delay_s"])
            reached, wanted = r["max_severity"], r["expected_severity"]
            if reached and wanted and _RANK[reached] >= _RANK[wanted]:
                cell["severity_ok"] += 1
    other_rows = [
        {
            "kind": kind,
            "variant": label,
            "attacks": sum(len(h) for h in cell["hits"].values()),
            "recall": _mean_sd([sum(h) / len(h) for h in cell["hits"].values()]),
            "median_delay_s": statistics.median(cell["delays"]) if cell["delays"] else None,
            "p90_delay_s": _quantile(cell["delays"], 0.9) if cell["delays"] else None,
            "expected_severity_reached": cell["severity_ok"],
        }
        for (kind, label), cell in others.items()
    ]
    return {
        "rules": rules,
        "other_attacks": other_rows,
        "false_alerts_per_day_all_rules": all_rules,
        "named_fakes": naming,
        "purchases": purchases,
        "midas_r": midas_budgets,
    }


# --------------------------------------------------------------------------------- output


def _fmt_ms(x: dict[str, Any] | None, pct: bool = False, digits: int = 2) -> str:
    if not x:
        return "—"
    if pct:
        return f"{100 * x['mean']:.0f} ± {100 * x['sd']:.0f} %"
    return f"{x['mean']:.{digits}f} ± {x['sd']:.{digits}f}"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _dur_ms(x: dict[str, Any] | None) -> str:
    if not x:
        return "—"
    mean, sd = x["mean"], x["sd"]
    if mean < 120:
        return f"{mean:.0f} ± {sd:.0f} s"
    if mean < 2 * 3600:
        return f"{mean / 60:.1f} ± {sd / 60:.1f} min"
    return f"{mean / 3600:.1f} ± {sd / 3600:.1f} h"


def print_tables(result: dict[str, Any], console: Console) -> None:
    summary = result["summary"]
    seeds = len(result["per_seed"])
    days = result["data"]["days"]
    table = Table(
        title=f"Detection quality on the Higgs week ({days:.2f} days, {seeds} seed(s), mean ± sd)"
    )
    for col in (
        "rule",
        "attacks/seed",
        "recall",
        "recall (designed)",
        "false alerts/day",
        "median delay",
        "p90 delay",
    ):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for rule, r in summary["rules"].items():
        designed = r["designed_attacks_per_seed"]
        table.add_row(
            rule,
            f"{r['attacks_per_seed']['mean']:.0f}" if r["attacks_per_seed"] else "0",
            _fmt_ms(r["recall"], pct=True),
            f"{_fmt_ms(r['recall_designed'], pct=True)} of {designed['mean']:.0f}"
            if designed and designed["mean"]
            else "—",
            _fmt_ms(r["false_alerts_per_day"]),
            _dur_ms(r["median_delay_s"]),
            _dur_ms(r["p90_delay_s"]),
        )
    table.add_row(
        "all rules", "", "", "", _fmt_ms(summary["false_alerts_per_day_all_rules"]), "", ""
    )
    console.print(table)

    budgets = list(summary["midas_r"])
    if summary["purchases"]:
        pt = Table(
            title="Follower purchases: follower_spike vs MIDAS-R at the same false-alert budget "
            "(recall mean ± sd over seeds; median delay pooled)"
        )
        for col in (
            "fakes",
            "over",
            "accounts",
            "camouflage",
            "peak/10 min",
            "ours recall",
            "ours delay",
            "MIDAS-R recall",
            "MIDAS-R delay",
        ):
            pt.add_column(col, justify="right")
        order = {"10m": 0, "2h": 1, "24h": 2}
        for row in sorted(
            summary["purchases"],
            key=lambda r: (r["fakes"], order.get(r["span"], 9), r["accounts"], r["camouflage"]),
        ):
            m = row["midas_r"]["matched"]
            pt.add_row(
                str(row["fakes"]),
                row["span"],
                row["accounts"],
                "yes" if row["camouflage"] else "no",
                f"{row['peak_10min_mean']:.0f}",
                _fmt_ms(row["ours_recall"], pct=True),
                _dur(row["ours_median_delay_s"]),
                _fmt_ms(m["recall"], pct=True),
                _dur(m["median_delay_s"]),
            )
        console.print(pt)

    if summary["other_attacks"]:
        ot = Table(title="Other attacks (recall mean ± sd over seeds; delays pooled over seeds)")
        for col in (
            "attack",
            "variant",
            "n",
            "recall",
            "median delay",
            "p90 delay",
            "expected severity reached",
        ):
            ot.add_column(col, justify="left" if col in ("attack", "variant") else "right")
        for row in summary["other_attacks"]:
            ot.add_row(
                row["kind"],
                row["variant"],
                str(row["attacks"]),
                _fmt_ms(row["recall"], pct=True),
                _dur(row["median_delay_s"]),
                _dur(row["p90_delay_s"]),
                f"{row['expected_severity_reached']} of {row['attacks']}",
            )
        console.print(ot)

    mt = Table(title="MIDAS-R on follow edges, threshold set on the untouched week")
    for col in (
        "budget",
        "threshold",
        "false alerts/day",
        "purchase recall",
        "recall (designed)",
        "median delay",
        "p90 delay",
        "other accounts flagged/day (injected run)",
    ):
        mt.add_column(col, justify="right")
    fs = summary["rules"]["follower_spike"]
    mt.add_row(
        "follower_spike (ours)",
        "—",
        _fmt_ms(fs["false_alerts_per_day"]),
        _fmt_ms(fs["recall"], pct=True),
        _fmt_ms(fs["recall_designed"], pct=True),
        _dur_ms(fs["median_delay_s"]),
        _dur_ms(fs["p90_delay_s"]),
        "",
    )
    for b in budgets:
        m = summary["midas_r"][b]
        mt.add_row(
            f"MIDAS-R, {'same as ours' if b == 'matched' else b}",
            _fmt_ms(m["threshold"], digits=0),
            _fmt_ms(m["false_alerts_per_day"]),
            _fmt_ms(m["recall"], pct=True),
            _fmt_ms(m["recall_designed"], pct=True),
            _dur_ms(m["median_delay_s"]),
            _dur_ms(m["p90_delay_s"]),
            _fmt_ms(m["injected_run_alerts_per_day_on_other_accounts"]),
        )
    console.print(mt)

    notes = result["notes"]
    for line in notes:
        console.print(f"• {line}", highlight=False)


def _notes(result: dict[str, Any]) -> list[str]:
    per_seed = result["per_seed"]
    params = result["parameters"]
    lines = [
        f"Texts: {result['text_model']}",
        f"Follows: {result['follow_model']}",
    ]
    follows = [s["untouched"]["organic_follow_peak"] for s in per_seed]
    lines.append(
        "Organic follows per seed: "
        + ", ".join(f"{f['follows']:,}" for f in follows)
        + "; busiest 10 min of any account: "
        + ", ".join(str(f["max_follows_in_10min"]) for f in follows)
        + " follows (follower_spike floor: 30)."
    )
    dup = [
        (
            s["untouched"]["false_alerts"]["duplicate_reply_spam"],
            s["untouched"]["duplicate_reply_spam_single_tweet"],
        )
        for s in per_seed
    ]
    if any(total for total, _ in dup):
        lines.append(
            "duplicate_reply_spam false alerts that are one multi-mention tweet (all sampled "
            "events share author and second): "
            + ", ".join(f"{single} of {total}" for total, single in dup)
            + " per seed."
        )
    new: Counter[str] = Counter()
    for s in per_seed:
        for rule, counts in s["injected"]["unexplained_alerts"].items():
            new[rule] += counts["new"]
    if sum(new.values()):
        lines.append(
            "Injected runs: alerts on accounts no attack targeted and absent from the untouched "
            "week (collateral of the injections), all seeds: "
            + ", ".join(f"{r} {n}" for r, n in new.items() if n)
            + "."
        )
    naming = result["summary"]["named_fakes"]
    if naming["precision"]:
        lines.append(
            f"Named fakes (follower_spike related_ids against the injected fakes): precision "
            f"{_fmt_ms(naming['precision'], pct=True)}; recall "
            f"{_fmt_ms(naming['recall_of_followed_by_then'], pct=True)} of the fakes an alert "
            f"could name (followed by its time, at most 100), "
            f"{_fmt_ms(naming['recall'], pct=True)} of all the fakes (at most 100 an alert)."
        )
    skipped = sum(len(s["injected"]["skipped_attacks"]) for s in per_seed)
    if skipped:
        lines.append(f"{skipped} attack(s) skipped: the stream slice is too short for them.")
    lines.append(
        "recall (designed): only the attacks the generator's ExpectedAlert says the default "
        "thresholds must catch (for purchases: the fake follows reach the 30-follow floor "
        "within 10 min); slower drips stay under every default threshold by design."
    )
    lines.append(
        f"Delay: first alert's window_end (event time of its trigger) minus attack start. "
        f"MIDAS-R: rows {params['midas']['rows']}, buckets {params['midas']['buckets']}, "
        f"alpha {params['midas']['alpha']}, tick {params['midas']['tick_seconds']:g} s."
    )
    lines.append(
        f"Wall time {result['wall_seconds']:.0f} s on {result['machine']['platform']} "
        f"({result['machine']['cpus']} CPUs, Python {result['machine']['python']})."
    )
    return lines


# ------------------------------------------------------------------------------------ main


def run_benchmark(options: Options, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    log = log or (lambda _msg: None)
    started = time.perf_counter()
    activity_path = options.data_dir / ACTIVITY_FILE
    graph_path = options.data_dir / GRAPH_FILE
    activity = load_activity(activity_path, hours=options.hours)
    graph = load_graph(graph_path)
    log(
        f"loaded {activity.lines:,} activity lines ({len(activity.interactions):,} events in the "
        f"slice) and {len(graph.edges):,} follower edges in {time.perf_counter() - started:.1f} s"
    )
    world = World(activity, graph, warmup_ms=int(options.warmup_hours * HOUR_MS))
    per_seed = [
        run_seed(seed, activity, graph, world, options, log)
        for seed in range(options.first_seed, options.first_seed + options.seeds)
    ]
    graph_nodes = {a for a, _ in graph.edges} | {b for _, b in graph.edges}
    result: dict[str, Any] = {
        "benchmark": "detection_quality",
        "command": " ".join(["python -m bench.quality", *sys.argv[1:]]),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "data": {
            "activity": {
                "path": str(activity_path),
                "sha256": sha256(activity_path),
                "lines": activity.lines,
                "lines_by_code": activity.lines_by_code,
                "events_in_slice": len(activity.interactions),
                "events_by_type": activity.by_kind(),
            },
            "graph": {
                "path": str(graph_path),
                "sha256": sha256(graph_path),
                "lines": graph.lines,
                "edges": len(graph.edges),
                "accounts": len(graph_nodes),
                "following_accounts": len({a for a, _ in graph.edges}),
            },
            "start": datetime.fromtimestamp(activity.start_ms / 1000, UTC).isoformat(),
            "end": datetime.fromtimestamp(activity.end_ms / 1000, UTC).isoformat(),
            "days": activity.days,
        },
        "parameters": {
            "seeds": list(range(options.first_seed, options.first_seed + options.seeds)),
            "quick": options.quick,
            "hours": options.hours,
            "warmup_hours": options.warmup_hours,
            "follow_share_per_week": options.follow_share,
            "tweet_text": options.tweet_text,
            "organic": options.organic,
            "grid": options.grid.to_json(),
            "detection_settings": "defaults (service/settings.py)",
            "midas": {
                "rows": options.midas_rows,
                "buckets": options.midas_buckets,
                "alpha": options.midas_alpha,
                "tick_seconds": options.midas_tick_seconds,
                "episode_gap_seconds": SPIKE_WINDOW_MS / 1000,
                "budgets": ["matched", *(f"{b:g}/day" for b in EXTRA_BUDGETS_PER_DAY)],
            },
        },
        "text_model": TEXT_MODEL if options.tweet_text == "shared" else TEXT_MODEL_DISTINCT,
        "follow_model": (
            f"each fragment edge is a follow during the week with probability "
            f"{options.follow_share:g} (x the slice's share of the week); half the follows of "
            f"an account that received engagement come ~30 min after one of those, the rest "
            f"at times drawn from the activity stream. "
            + (
                "Harder week: cascade follows from retweeters and their followers, profile "
                "snapshots on 30 % of organic events (skewed: some new, never posted, or "
                "following far more than followed), 3 % of follows undone (bench/higgs.py)."
                if options.organic == "harder"
                else "Plain week: no profile snapshots, no cascade follows, no unfollows."
            )
        ),
        "per_seed": per_seed,
    }
    result["summary"] = summarize(per_seed, activity.days)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    result["notes"] = _notes(result)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.quality", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, help="number of seeds (default 3; 1 with --quick)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="first 24 h, one attack per rule")
    parser.add_argument("--hours", type=float, help="replay only the week's first hours")
    parser.add_argument("--replicates", type=int, help="copies of each attack per seed (2)")
    parser.add_argument("--follow-share", type=float, help="fragment edges followed in the week")
    parser.add_argument("--tweet-text", choices=("shared", "distinct"))
    parser.add_argument(
        "--organic", choices=("harder", "plain"), help="the organic week's model (harder)"
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--midas-buckets", type=int)
    parser.add_argument("--midas-alpha", type=float)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    options = QUICK if args.quick else Options()
    changes: dict[str, Any] = {"data_dir": args.data_dir}
    if args.seeds is not None:
        changes["seeds"] = args.seeds
    changes["first_seed"] = args.first_seed
    if args.hours is not None:
        changes["hours"] = args.hours
    if args.replicates is not None:
        changes["grid"] = replace(options.grid, replicates=args.replicates)
    if args.follow_share is not None:
        changes["follow_share"] = args.follow_share
    if args.tweet_text is not None:
        changes["tweet_text"] = args.tweet_text
    if args.organic is not None:
        changes["organic"] = args.organic
    if args.midas_buckets is not None:
        changes["midas_buckets"] = args.midas_buckets
    if args.midas_alpha is not None:
        changes["midas_alpha"] = args.midas_alpha
    options = replace(options, **changes)
    tune_gc()  # as `reciprocity replay` does: the state is millions of long-lived lists
    err = Console(stderr=True)
    result = run_benchmark(options, log=lambda msg: err.print(msg, highlight=False))
    report(result, print_tables, args.out, width=170)


if __name__ == "__main__":
    main()
