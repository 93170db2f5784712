"""Attacks injected into the Higgs week, built with `service.devtools.generate`'s scenario builders.

Every attack is one call to a builder of `service/devtools/generate.py` (`follower_purchase`,
`retweet_request_campaign`, `follow_churn`, `duplicate_reply_spam`) with parameters from the
grid below, on real accounts of the week: purchase subjects are accounts of the follower graph
with 5-500 followers in it, camouflage targets its 500 most followed accounts, strangers,
churn targets and reply targets are real active accounts. Attackers are either new accounts
(`new`) or real active accounts of the week (`real`, a hijacked account whose own traffic
goes on around the attack). A real requester's strangers neither follow it in the graph nor
retweeted, replied to or mentioned it during the week.

Attack start (the zero of every detection delay) is the first injected event the rule can
see for its subject: a purchase's first fake follow of the subject (its camouflage follows,
hours before, are preparation), a campaign's first request (its pinned post comes 10 minutes
earlier), a churner's first follow, a spammer's first reply. `first_event_ms` keeps the first
injected event of all.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Literal

from bench.higgs import HOUR_MS, Activity, Graph
from service.devtools.generate import (
    MINUTE_MS,
    ExpectedAlert,
    Injection,
    duplicate_reply_spam,
    follow_churn,
    follower_pool_purchase,
    follower_purchase,
    retweet_request_campaign,
)

__all__ = ["Attack", "Grid", "World", "build_attacks"]

SPIKE_WINDOW_MS = 10 * MINUTE_MS
CAMOUFLAGE_PER_FAKE = 3
POPULAR = 500
CAMOUFLAGE_SPAN_MS = 6 * HOUR_MS
CHURN_PACES = {
    # (follows, span, unfollow delay range): generate's default pace, and a fast farmer
    "day": (80, 12 * HOUR_MS, (HOUR_MS, 8 * HOUR_MS)),
    "fast": (80, HOUR_MS, (10 * MINUTE_MS, 50 * MINUTE_MS)),
}
SPANS = {"10m": 10 * MINUTE_MS, "2h": 2 * HOUR_MS, "24h": 24 * HOUR_MS}


@dataclass(frozen=True)
class Grid:
    """Which attacks to inject, each `replicates` times per seed."""

    purchase_sizes: tuple[int, ...] = (50, 200, 1000)
    purchase_spans: tuple[str, ...] = ("10m", "2h", "24h")
    purchase_fakes: tuple[Literal["fresh", "dormant", "unseen"], ...] = (
        "fresh",
        "dormant",
        "unseen",
    )
    purchase_camouflage: tuple[bool, ...] = (False, True)
    campaign_strangers: tuple[int, ...] = (1, 4, 12)
    campaign_requesters: tuple[str, ...] = ("new", "real")
    churn_paces: tuple[str, ...] = ("day", "fast")
    churn_actors: tuple[str, ...] = ("new", "real")
    duplicate_targets: tuple[int, ...] = (8, 25)
    duplicate_actors: tuple[str, ...] = ("new", "real")
    duplicate_wordings: tuple[str, ...] = ("identical", "reworded")
    # One camouflaged pool sold to several customers at once (lockstep): pool sizes and spans
    pool_sizes: tuple[int, ...] = (50, 200)
    pool_spans: tuple[str, ...] = ("10m", "2h")
    pool_customers: int = 3
    replicates: int = 2

    def to_json(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


QUICK_GRID = Grid(
    purchase_sizes=(200,),
    purchase_spans=("10m",),
    purchase_fakes=("fresh",),
    purchase_camouflage=(True,),
    campaign_strangers=(4,),
    campaign_requesters=("new",),
    churn_paces=("fast",),
    churn_actors=("new",),
    duplicate_targets=(8,),
    duplicate_actors=("real",),
    duplicate_wordings=("reworded",),
    pool_sizes=(50,),
    pool_spans=("10m",),
    replicates=1,
)


@dataclass
class Attack:
    attack_id: str
    kind: str  # follower_purchase | retweet_request_campaign | follow_churn | duplicate_replies
    rule: str
    variant: dict[str, object]
    subject_id: str
    start_ms: int
    first_event_ms: int
    last_event_ms: int
    expected: bool  # generate's ExpectedAlert: the default thresholds must alert
    expected_severity: str | None
    peak_10min: int | None = None  # purchases: most fake follows of the subject in 10 min
    events: list[dict[str, object]] = field(default_factory=list, repr=False)
    fake_prefix: str | None = None  # purchases: the fakes' names (default `<id>-fake-`)

    def to_json(self) -> dict[str, object]:
        return {
            "attack_id": self.attack_id,
            "kind": self.kind,
            "rule": self.rule,
            "variant": self.variant,
            "subject_id": self.subject_id,
            "start_ms": self.start_ms,
            "first_event_ms": self.first_event_ms,
            "last_event_ms": self.last_event_ms,
            "injected_events": len(self.events),
            "expected_by_design": self.expected,
            "expected_severity": self.expected_severity,
            "peak_10min": self.peak_10min,
        }


class World:
    """The real accounts attacks are aimed at, and the week's bounds."""

    def __init__(self, activity: Activity, graph: Graph, *, warmup_ms: int) -> None:
        self.start_ms = activity.start_ms
        self.end_ms = activity.end_ms
        self.warmup_ms = warmup_ms
        followers: dict[int, set[int]] = defaultdict(set)
        following: dict[int, set[int]] = defaultdict(set)
        for a, b in graph.edges:
            followers[b].add(a)
            following[a].add(b)
        self.followers = followers
        self.following = following
        engagers: dict[int, set[int]] = defaultdict(set)
        actors: set[int] = set()
        for _, a, b, _ in activity.interactions:
            actors.add(a)
            if a != b:
                engagers[b].add(a)
        self.engagers = engagers
        self.active = sorted(actors)
        by_followers = sorted(followers, key=lambda b: (-len(followers[b]), b))
        # Camouflage targets: the 500 most followed (a tenth of them in a small test graph).
        self.popular = by_followers[: max(1, min(POPULAR, len(by_followers) // 10))]
        popular = set(self.popular)
        self.subjects = sorted(
            b for b, fs in followers.items() if 5 <= len(fs) <= 500 and b not in popular
        )
        self.sources = sorted(a for a in following if a in actors)  # active, following known

    def fits(self, lead_ms: int, duration_ms: int) -> bool:
        earliest = self.start_ms + max(self.warmup_ms, lead_ms + MINUTE_MS)
        return earliest <= self.end_ms - duration_ms - 10 * MINUTE_MS

    def place(self, rng: Random, lead_ms: int, duration_ms: int) -> int:
        earliest = self.start_ms + max(self.warmup_ms, lead_ms + MINUTE_MS)
        return rng.randint(earliest, self.end_ms - duration_ms - 10 * MINUTE_MS)


class _Draw:
    """Real accounts handed out without repeats across the attacks of one seed."""

    def __init__(self, rng: Random, pool: Sequence[int], used: set[int]) -> None:
        self.pool = list(pool)
        rng.shuffle(self.pool)
        self.taken = 0
        self.used = used  # shared by every draw of one seed

    def take(self, k: int, ok: Callable[[int], bool] | None = None) -> list[int]:
        chosen: list[int] = []
        while len(chosen) < k:
            if self.taken >= len(self.pool):
                raise ValueError("not enough real accounts for the attack grid")
            uid = self.pool[self.taken]
            self.taken += 1
            if uid in self.used or (ok is not None and not ok(uid)):
                continue
            self.used.add(uid)
            chosen.append(uid)
        return chosen


def _peak(times: Sequence[int], window_ms: int) -> int:
    ordered = sorted(times)
    best = left = 0
    for right, at in enumerate(ordered):
        while ordered[left] <= at - window_ms:
            left += 1
        best = max(best, right - left + 1)
    return best


def _expected(expected: list[ExpectedAlert], rule: str, subject: str) -> tuple[bool, str | None]:
    for x in expected:
        if x.rule == rule and x.subject_id == subject and x.alert:
            return True, x.min_severity
    return False, None


def _attack(
    attack_id: str,
    kind: str,
    rule: str,
    variant: dict[str, object],
    subject: str,
    injection: Injection,
    start_ms: int,
    peak: int | None = None,
) -> Attack:
    times = [int(str(e["occurred_at"])) for e in injection.events]
    expected, severity = _expected(injection.expected, rule, subject)
    return Attack(
        attack_id,
        kind,
        rule,
        variant,
        subject,
        start_ms,
        min(times),
        max(times),
        expected,
        severity,
        peak,
        injection.events,
    )


def build_attacks(world: World, grid: Grid, seed: int) -> tuple[list[Attack], list[str]]:
    """Every attack of the grid that fits in the stream, and the ones skipped (with why)."""
    rng = Random(f"{seed}/attacks")
    used: set[int] = set()
    subjects = _Draw(rng, world.subjects, used)
    people = _Draw(rng, world.active, used)
    sources = _Draw(rng, world.sources, used)
    attacks: list[Attack] = []
    skipped: list[str] = []
    n = 0

    def next_id(tag: str) -> str:
        nonlocal n
        n += 1
        return f"q{seed}-{tag}{n}"

    reps = range(1, grid.replicates + 1)
    for size in grid.purchase_sizes:
        for span in grid.purchase_spans:
            for fakes in grid.purchase_fakes:
                for camo in grid.purchase_camouflage:
                    for rep in reps:
                        variant: dict[str, object] = {
                            "fakes": size,
                            "span": span,
                            "accounts": fakes,
                            "camouflage": camo,
                            "replicate": rep,
                        }
                        lead = CAMOUFLAGE_SPAN_MS if camo else 0
                        if not world.fits(lead, SPANS[span]):
                            skipped.append(f"follower_purchase {variant}: stream too short")
                            continue
                        aid = next_id("p")
                        subject = str(subjects.take(1)[0])
                        start = world.place(rng, lead, SPANS[span])
                        cover = [str(u) for u in world.popular] if camo else []
                        inj = follower_purchase(
                            rng,
                            subject,
                            start,
                            followers=size,
                            span_ms=SPANS[span],
                            fake_accounts=fakes,
                            fake_prefix=f"{aid}-fake-",
                            camouflage_targets=cover,
                            camouflage_per_fake=CAMOUFLAGE_PER_FAKE if camo else 0,
                            camouflage_span_ms=CAMOUFLAGE_SPAN_MS,
                            scenario=aid,
                        )
                        hits = [
                            int(str(e["occurred_at"]))
                            for e in inj.events
                            if e.get("target_id") == subject
                        ]
                        attacks.append(
                            _attack(
                                aid,
                                "follower_purchase",
                                "follower_spike",
                                variant,
                                subject,
                                inj,
                                min(hits),
                                _peak(hits, SPIKE_WINDOW_MS),
                            )
                        )

    for strangers in grid.campaign_strangers:
        for who in grid.campaign_requesters:
            for rep in reps:
                variant = {"strangers": strangers, "requester": who, "replicate": rep}
                if not world.fits(10 * MINUTE_MS, 40 * MINUTE_MS):
                    skipped.append(f"retweet_request_campaign {variant}: stream too short")
                    continue
                aid = next_id("r")
                if who == "real":
                    requester_id = people.take(1)[0]
                    requester = str(requester_id)

                    def stranger(uid: int, r: int = requester_id) -> bool:
                        return (
                            uid != r
                            and uid not in world.followers.get(r, ())
                            and uid not in world.engagers.get(r, ())
                        )

                    chosen = people.take(strangers, stranger)
                else:
                    requester = f"{aid}-requester"
                    chosen = people.take(strangers)
                start = world.place(rng, 10 * MINUTE_MS, 40 * MINUTE_MS)
                inj = retweet_request_campaign(
                    rng, requester, [str(u) for u in chosen], start, scenario=aid
                )
                first = min(int(str(e["occurred_at"])) for e in inj.events if e["type"] != "post")
                attacks.append(
                    _attack(
                        aid,
                        "retweet_request_campaign",
                        "unsolicited_retweet_request",
                        variant,
                        requester,
                        inj,
                        first,
                    )
                )

    for pace in grid.churn_paces:
        for who in grid.churn_actors:
            for rep in reps:
                variant = {"pace": pace, "churner": who, "replicate": rep}
                follows, span_ms, after = CHURN_PACES[pace]
                if not world.fits(0, span_ms + after[1]):
                    skipped.append(f"follow_churn {variant}: stream too short")
                    continue
                aid = next_id("c")
                if who == "real":
                    churner_id = sources.take(1)[0]
                    churner = str(churner_id)
                    mine = world.following.get(churner_id, set())

                    def unfollowed(uid: int, c: int = churner_id, m: set[int] = mine) -> bool:
                        return uid != c and uid not in m

                    targets = people.take(follows, unfollowed)
                else:
                    churner = f"{aid}-churner"
                    targets = people.take(follows)
                start = world.place(rng, 0, span_ms + after[1])
                inj = follow_churn(
                    rng,
                    churner,
                    [str(u) for u in targets],
                    start,
                    span_ms=span_ms,
                    unfollow_after_ms=after,
                    scenario=aid,
                )
                first = min(int(str(e["occurred_at"])) for e in inj.events)
                attacks.append(
                    _attack(aid, "follow_churn", "follow_churn", variant, churner, inj, first)
                )

    for k, who, wording in itertools.product(
        grid.duplicate_targets, grid.duplicate_actors, grid.duplicate_wordings
    ):
        for rep in reps:
            variant = {"targets": k, "sender": who, "wording": wording, "replicate": rep}
            if not world.fits(0, 40 * MINUTE_MS):
                skipped.append(f"duplicate_replies {variant}: stream too short")
                continue
            aid = next_id("d")
            sender = str(people.take(1)[0]) if who == "real" else f"{aid}-spammer"
            addressed = [str(u) for u in people.take(k) if str(u) != sender]
            start = world.place(rng, 0, 40 * MINUTE_MS)
            inj = duplicate_reply_spam(
                rng, sender, addressed, start, scenario=aid, reword=wording == "reworded"
            )
            first = min(int(str(e["occurred_at"])) for e in inj.events)
            attacks.append(
                _attack(
                    aid,
                    "duplicate_replies",
                    "duplicate_reply_spam",
                    variant,
                    sender,
                    inj,
                    first,
                )
            )
    attacks.extend(_pool_purchases(world, grid, seed, subjects, skipped))
    return attacks, skipped


def _pool_purchases(
    world: World, grid: Grid, seed: int, subjects: _Draw, skipped: list[str]
) -> list[Attack]:
    """Pools sold to `grid.pool_customers` customers at once: one attack per customer, each
    holding its own customer's follows. Drawn last, with a generator of their own, so that
    adding them moved none of the other attacks."""
    rng = Random(f"{seed}/pool-attacks")
    attacks: list[Attack] = []
    for n, (size, span, rep) in enumerate(
        itertools.product(grid.pool_sizes, grid.pool_spans, range(1, grid.replicates + 1)), 1
    ):
        variant: dict[str, object] = {
            "fakes": size,
            "span": span,
            "accounts": f"pool of {grid.pool_customers}",
            "camouflage": True,
            "replicate": rep,
        }
        if not world.fits(0, SPANS[span]):
            skipped.append(f"follower_purchase {variant}: stream too short")
            continue
        pool_id = f"q{seed}-pool{n}"
        customers = [str(c) for c in subjects.take(grid.pool_customers)]
        start = world.place(rng, 0, SPANS[span])
        inj = follower_pool_purchase(
            rng,
            customers,
            start,
            followers=size,
            span_ms=SPANS[span],
            fake_prefix=f"{pool_id}-fake-",
            scenario=pool_id,
        )
        for k, customer in enumerate(customers):
            mine = Injection([e for e in inj.events if e["target_id"] == customer], inj.expected)
            hits = [int(str(e["occurred_at"])) for e in mine.events]
            attack = _attack(
                f"{pool_id}-c{k + 1}",
                "follower_purchase",
                "follower_spike",
                variant,
                customer,
                mine,
                min(hits),
                _peak(hits, SPIKE_WINDOW_MS),
            )
            attack.fake_prefix = f"{pool_id}-fake-"
            attacks.append(attack)
    return attacks
