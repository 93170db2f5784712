"""Seeded synthetic traffic: organic background plus injected spam scenarios and near-misses.

`generate_traffic(seed)` returns JSON-ready event dicts and the alerts each scenario must (or
must not) produce at the default thresholds of `service/settings.py`. Everything is derived
from `random.Random` instances seeded with strings built from the seed, so the same seed gives
byte-identical output in any process (sets are used for membership only, never iterated).

Each scenario is a small public function returning an `Injection`: raw events (`occurred_at`
as int epoch ms, no `event_id` yet) plus its `ExpectedAlert`s. The detection benchmark reuses
them to inject attacks into real traffic and then calls `finalize_events` with its own id
prefix. The core functions do no I/O; `write_jsonl` is the only writer.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import BinaryIO, Literal

import orjson

from service.core.models import format_timestamp
from service.settings import DetectionSettings

__all__ = [
    "RULES",
    "ExpectedAlert",
    "Injection",
    "Population",
    "Traffic",
    "duplicate_reply_spam",
    "finalize_events",
    "follow_churn",
    "follower_purchase",
    "friend_retweet_request",
    "generate_traffic",
    "non_request_mentions",
    "organic_follower_bump",
    "organic_traffic",
    "retweet_request_campaign",
    "selective_unfollows",
    "thank_you_replies",
    "write_jsonl",
]

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

RULES = ("unsolicited_retweet_request", "follower_spike", "follow_churn", "duplicate_reply_spam")
SeverityName = Literal["low", "medium", "high"]
Event = dict[str, object]

# Expected alerts are judged against the shipped default thresholds.
_DEFAULTS = DetectionSettings()
RT_WINDOW_MS = _DEFAULTS.unsolicited_retweet_request.window_seconds * SECOND_MS
RT_MEDIUM_STRANGERS = _DEFAULTS.unsolicited_retweet_request.medium_distinct_strangers
RT_HIGH_STRANGERS = _DEFAULTS.unsolicited_retweet_request.high_distinct_strangers
SPIKE_WINDOW_MS = _DEFAULTS.follower_spike.window_seconds * SECOND_MS
SPIKE_MIN_FOLLOWS = _DEFAULTS.follower_spike.min_follows
SPIKE_HIGH_MULTIPLIER = _DEFAULTS.follower_spike.high_multiplier
CHURN_WITHIN_MS = _DEFAULTS.follow_churn.churn_within_seconds * SECOND_MS
CHURN_WINDOW_MS = _DEFAULTS.follow_churn.window_seconds * SECOND_MS
CHURN_MIN_PAIRS = _DEFAULTS.follow_churn.min_churned_pairs
CHURN_MAX_FOLLOW_BACK_RATE = _DEFAULTS.follow_churn.max_follow_back_rate
CHURN_HIGH_MULTIPLIER = _DEFAULTS.follow_churn.high_multiplier
DUPLICATE_WINDOW_MS = _DEFAULTS.duplicate_reply_spam.window_seconds * SECOND_MS
DUPLICATE_MIN_TARGETS = _DEFAULTS.duplicate_reply_spam.min_distinct_targets
DUPLICATE_HIGH_MULTIPLIER = _DEFAULTS.duplicate_reply_spam.high_multiplier

# Organic traffic keeps every account's follower gain below this per spike window, well under
# the spike floor (30), so only injected scenarios can look like a spike.
ORGANIC_MAX_FOLLOWS_PER_WINDOW = 15
STRING_TIME_SHARE = 0.8  # the rest of occurred_at values are integer epoch ms (contract: both)
SNAPSHOT_SHARE = 0.85  # organic events carrying the optional `actor` snapshot
MIN_USERS = 400  # generate_traffic draws ~200 distinct organic participants outside the top 50


@dataclass(frozen=True)
class ExpectedAlert:
    scenario: str
    rule: str
    subject_id: str
    alert: bool  # True: must alert (rule, subject); False: near-miss, must not alert
    min_severity: str | None  # highest severity that must be reached; None for near-misses

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "rule": self.rule,
            "subject_id": self.subject_id,
            "alert": self.alert,
            "min_severity": self.min_severity,
        }


@dataclass(frozen=True)
class Traffic:
    events: list[dict[str, object]]  # JSON-ready, sorted by (occurred_at ms, event_id)
    expected: list[ExpectedAlert]


@dataclass(frozen=True)
class Injection:
    """One scenario's raw events (int `occurred_at`, no `event_id`) and its expectations."""

    events: list[Event]
    expected: list[ExpectedAlert]


# --------------------------------------------------------------------------- building blocks


def _event(
    kind: str,
    actor: str,
    at_ms: int,
    target: str | None = None,
    *,
    text: str | None = None,
    post_id: str | None = None,
    snapshot: dict[str, object] | None = None,
) -> Event:
    event: Event = {"type": kind, "actor_id": actor}
    if target is not None:
        event["target_id"] = target
    event["occurred_at"] = at_ms
    if post_id is not None:
        event["post_id"] = post_id
    if text is not None:
        event["text"] = text
    if snapshot is not None:
        event["actor"] = snapshot
    return event


def _snapshot(created_at_ms: int, followers: int, following: int, posts: int) -> Event:
    return {
        "created_at": format_timestamp(created_at_ms),
        "followers_count": max(0, followers),
        "following_count": max(0, following),
        "posts_count": max(0, posts),
    }


class _Account:
    """A scenario-owned account whose snapshot follows its own actions."""

    def __init__(self, created_at_ms: int, followers: int, following: int, posts: int) -> None:
        self.created_at_ms = created_at_ms
        self.followers = followers
        self.following = following
        self.posts = posts

    def snapshot(self) -> Event:
        return _snapshot(self.created_at_ms, self.followers, self.following, self.posts)


def _established(rng: Random, at_ms: int) -> _Account:
    """An ordinary years-old account: balanced counts, a real posting history."""
    followers = rng.randint(150, 3000)
    return _Account(
        at_ms - rng.randrange(400 * DAY_MS, 3000 * DAY_MS),
        followers,
        rng.randint(100, min(2000, 2 * followers)),
        rng.randint(200, 8000),
    )


def _ms(event: Event) -> int:
    at = event["occurred_at"]
    assert isinstance(at, int)
    return at


def _spread(rng: Random, start_ms: int, span_ms: int, n: int) -> list[int]:
    """n sorted event times in [start, start + span), at least 1 s apart where they fit."""
    times = sorted(start_ms + rng.randrange(max(1, span_ms)) for _ in range(n))
    for i in range(1, len(times)):
        # Distinct times keep the (time, id) order identical to causal order in scenarios.
        if times[i] <= times[i - 1]:
            times[i] = times[i - 1] + 1
    return times


def _peak_count(times: Sequence[int], window_ms: int) -> int:
    """Most events inside any sliding window of `window_ms`."""
    ordered = sorted(times)
    best = 0
    left = 0
    for right, at in enumerate(ordered):
        while ordered[left] <= at - window_ms:
            left += 1
        best = max(best, right - left + 1)
    return best


def _peak_distinct(pairs: Sequence[tuple[int, str]], window_ms: int) -> int:
    """Most distinct keys inside any sliding window of `window_ms` over (time, key) pairs."""
    ordered = sorted(pairs)
    counts: dict[str, int] = {}
    best = 0
    left = 0
    for at, key in ordered:
        counts[key] = counts.get(key, 0) + 1
        while ordered[left][0] <= at - window_ms:
            old = ordered[left][1]
            counts[old] -= 1
            if counts[old] == 0:
                del counts[old]
            left += 1
        best = max(best, len(counts))
    return best


# ----------------------------------------------------------------------------- organic texts


def _words(text: str) -> tuple[str, ...]:
    """A word list written as `a | b | c` lines (keeps the lists compact and readable)."""
    return tuple(w.strip() for w in text.replace("\n", "|").split("|") if w.strip())


# Word lists for organic texts. None contains a share verb (share, spread, boost, repost,
# retweet, RT, amplify): organic traffic must never look like a retweet request. Together
# they make ~10^6 sentences, and each actor never repeats one.
_OPENERS = ("",) * 4 + _words(
    """
    Honestly, | Wow, | Hot take: | Quick thought: | Not gonna lie, | Reminder: | Okay so
    Update: | Fun fact: | Still thinking about how | Can't believe | Loving how | Ugh,
    Well, | Today | Apparently | Funny how | Low-key
"""
)
_SUBJECTS = _words(
    """
    the new coffee place downtown | this morning's run | the match last night
    my sourdough starter | the 8:15 train | our team's release | the weather this week
    that documentary about octopuses | the city council vote | my cat | the new bike lane
    the season finale | this pasta recipe | the library's reading room | my tomato plants
    the conference keynote | the farmers market | the latest firmware update
    the bakery on 5th street | the power outage | our book club pick
    the jazz trio at the pub | the museum's night opening | the hiking trail by the lake
    my new keyboard | the school fundraiser | the local derby | grandma's soup
    the late-night bus | the chess tournament | the office plant | the thunderstorm
    the ferry schedule | my daughter's science project | the new ramen spot
    the marathon route | this week's crossword | the open-source meetup
    the neighbour's dog | the sunrise today
"""
)
_PREDICATES = _words(
    """
    is absolutely wonderful | was a bit much | is so underrated
    turned out surprisingly good | is running late again | made my whole day
    needs a second look | was worth the wait | is better than expected
    keeps getting better | was chaos in the best way | deserves more attention
    is honestly perfect | was a total mess | is weirdly calming | surprised everyone
    went sideways fast | is exactly what I needed | could use some work | was pure joy
    feels like summer | broke my heart a little | is the highlight of the week
    was louder than I thought | is finally fixed | is not what I ordered | has me laughing
    is a small miracle | was over too soon | is peak comfort | looks fantastic
    smells amazing | is slower than ever | left me speechless | is suspiciously quiet
    was a delight | is back on track | needs more coffee | is pretty wild | changed my mind
"""
)
_TAILS = (
    ("",) * 3
    + _words("! | . | !! | ...")
    + _words(
        """
    😅 | 🎉 | ☕ | 🌧️ | #monday | #weekend | #food | #running | #citylife | #books | lol | tbh
    🙃 | 💛 | #gardening
"""
    )
)
REPLY_OPENERS = ("",) * 2 + _words(
    """
    Agreed, | Totally, | Hmm, | Not sure, | Great point, | Ha, | Same here, | Fair, | Oh no,
    Yes! | Interesting, | Wait, | Love this, | True,
"""
)


def _sentence(rng: Random) -> str:
    parts = [rng.choice(_OPENERS), rng.choice(_SUBJECTS), rng.choice(_PREDICATES)]
    tail = rng.choice(_TAILS)
    # Punctuation sticks to the last word; emoji, hashtags and "lol" follow a space.
    glue = "" if tail[:1] in ("", "!", ".") else " "
    text = " ".join(p for p in parts if p) + glue + tail
    return text[0].upper() + text[1:]


# -------------------------------------------------------------------------- organic traffic


@dataclass(frozen=True)
class Population:
    """The organic accounts: ids, popularity order and profiles at the start of the stream."""

    ids: list[str]
    by_popularity: list[str]  # most popular first
    created_at_ms: dict[str, int]
    followers: dict[str, int]
    following: dict[str, int]
    posts: dict[str, int]
    initial_following: dict[str, frozenset[str]]  # edges that predate the stream (not emitted)


def unused_sentence(rng: Random, seen: set[str]) -> str:
    """An organic sentence not in `seen` (an author's earlier texts), added to it: organic
    text is no duplicate spam."""
    text = _sentence(rng)
    for _ in range(8):
        if text not in seen:
            break
        text = _sentence(rng)
    seen.add(text)
    return text


def _population(rng: Random, users: int, start_ms: int) -> Population:
    width = max(5, len(str(users)))
    ids = [f"u{i:0{width}d}" for i in range(1, users + 1)]
    by_popularity = ids[:]
    rng.shuffle(by_popularity)
    created: dict[str, int] = {}
    followers: dict[str, int] = {}
    following: dict[str, int] = {}
    posts: dict[str, int] = {}
    for rank, uid in enumerate(by_popularity, start=1):
        created[uid] = start_ms - rng.randrange(365 * DAY_MS, 12 * 365 * DAY_MS)
        # Zipf-like audience; following stays within 3x followers so no organic account
        # matches the "following far more than followed" profile of bought followers.
        fans = int((80 + 250_000 / rank) * rng.uniform(0.8, 1.2))
        followers[uid] = fans
        following[uid] = rng.randint(40, min(1500, 3 * fans))
        posts[uid] = int(10 ** rng.uniform(1.5, 4.5))
    cum = list(itertools.accumulate(1.0 / rank for rank in range(1, users + 1)))
    initial: dict[str, frozenset[str]] = {}
    for uid in ids:
        # A few famous accounts and many ordinary ones: if everyone already followed the
        # top accounts, they could gain no followers during the stream.
        picks = {
            by_popularity[bisect.bisect_left(cum, rng.random() * cum[-1])]
            for _ in range(rng.randint(3, 12))
        }
        picks.update(rng.choice(ids) for _ in range(rng.randint(15, 60)))
        picks.discard(uid)
        initial[uid] = frozenset(picks)
    return Population(ids, by_popularity, created, followers, following, posts, initial)


def organic_traffic(
    rng: Random, *, users: int, start_ms: int, span_ms: int, events: int
) -> tuple[Population, list[Event]]:
    """Background traffic of established accounts that must raise no alert at defaults.

    Actors have heavy-tailed activity; targets are drawn Zipf-like by popularity or from the
    actor's own follows. Follows get follow-backs (more likely from small accounts), unfollows
    are rare, and texts are composed from word lists and never repeat per actor. No snapshots:
    `generate_traffic` attaches them in a final pass so counts stay consistent with every
    event in the stream, scenario events included.
    """
    pop = _population(rng, users, start_ms)
    world = _OrganicWorld(rng, pop)
    end_ms = start_ms + span_ms
    for at in _spread(rng, start_ms, span_ms, events):
        world.follow_backs_until(at)
        world.act(at)
    world.follow_backs_until(end_ms - 1)
    world.out.sort(key=_ms)
    return pop, world.out


class _OrganicWorld:
    """Mutable state while organic traffic is drawn in time order."""

    def __init__(self, rng: Random, pop: Population) -> None:
        self.rng = rng
        self.pop = pop
        n = len(pop.ids)
        self.pop_cum = list(itertools.accumulate(1.0 / rank for rank in range(1, n + 1)))
        activity = [min(40.0, rng.paretovariate(1.6)) for _ in range(n)]
        self.act_cum = list(itertools.accumulate(activity))
        # Ordered lists for choosing: sets are never iterated (their order is hash-seeded).
        self.follows_list = {uid: sorted(pop.initial_following[uid]) for uid in pop.ids}
        self.follows_set = {uid: set(lst) for uid, lst in self.follows_list.items()}
        self.received: dict[str, deque[int]] = {}
        self.used_text: dict[str, set[str]] = {}
        self.post_no = dict(pop.posts)
        self.pending: list[tuple[int, int, str, str]] = []  # (time, seq, follower, followee)
        self.seq = 0
        self.out: list[Event] = []

    def popular(self) -> str:
        cum = self.pop_cum
        return self.pop.by_popularity[bisect.bisect_left(cum, self.rng.random() * cum[-1])]

    def act(self, at: int) -> None:
        rng = self.rng
        actor = self.pop.ids[bisect.bisect_left(self.act_cum, rng.random() * self.act_cum[-1])]
        roll = rng.random()
        # Shares of the day's events: follow 18 %, unfollow 1 %, retweet 25 %, reply 18 %,
        # mention 10 %, post the rest (and whenever the drawn action has no fitting target).
        event: Event | None = None
        if roll < 0.18:
            event = self.try_follow(actor, at)
        elif roll < 0.19:
            event = self.try_unfollow(actor, at)
        elif roll < 0.72:
            target = self.engaged_target(actor)
            if target is not None:
                event = self.engage(actor, target, at, roll)
        if event is None:
            self.post_no[actor] += 1
            event = _event(
                "post",
                actor,
                at,
                text=self.text_for(actor),
                post_id=f"{actor}-p{self.post_no[actor]}",
            )
        self.out.append(event)

    def engaged_target(self, actor: str) -> str | None:
        mine = self.follows_list[actor]
        for _ in range(4):
            target = self.rng.choice(mine) if mine and self.rng.random() < 0.6 else self.popular()
            if target != actor:
                return target
        return None

    def recent_post(self, target: str) -> str:
        last = self.post_no[target]
        return f"{target}-p{self.rng.randint(max(1, last - 40), max(1, last))}"

    def engage(self, actor: str, target: str, at: int, roll: float) -> Event:
        rng = self.rng
        if roll < 0.44:
            return _event("retweet", actor, at, target, post_id=self.recent_post(target))
        if roll < 0.62:
            opener, body = rng.choice(REPLY_OPENERS), self.text_for(actor)
            text = f"{opener} {body[0].lower()}{body[1:]}" if opener else body
            return _event("reply", actor, at, target, text=text, post_id=self.recent_post(target))
        body = self.text_for(actor)
        text = f"@{target} {body}" if rng.random() < 0.6 else f"{body} cc @{target}"
        return _event("mention", actor, at, target, text=text)

    def try_follow(self, actor: str, at: int) -> Event | None:
        target = self.popular() if self.rng.random() < 0.7 else self.friend_of_friend(actor)
        if target is None or target == actor or target in self.follows_set[actor]:
            return None
        if not self.can_receive_follow(target, at):
            return None
        return self.follow(actor, target, at)

    def try_unfollow(self, actor: str, at: int) -> Event | None:
        mine = self.follows_list[actor]
        if not mine:
            return None
        target = mine.pop(self.rng.randrange(len(mine)))
        self.follows_set[actor].discard(target)
        return _event("unfollow", actor, at, target)

    def friend_of_friend(self, actor: str) -> str | None:
        mine = self.follows_list[actor]
        if not mine:
            return None
        theirs = self.follows_list[self.rng.choice(mine)]
        return self.rng.choice(theirs) if theirs else None

    def can_receive_follow(self, target: str, at: int) -> bool:
        # The cap that keeps organic follower gain far below the spike floor.
        window = self.received.setdefault(target, deque())
        while window and window[0] <= at - SPIKE_WINDOW_MS:
            window.popleft()
        return len(window) < ORGANIC_MAX_FOLLOWS_PER_WINDOW

    def follow(self, actor: str, target: str, at: int) -> Event:
        self.follows_list[actor].append(target)
        self.follows_set[actor].add(target)
        self.received.setdefault(target, deque()).append(at)
        if actor not in self.follows_set[target]:
            # Small accounts often follow back; celebrities rarely do.
            chance = 0.35 if self.pop.followers[target] < 5000 else 0.03
            if self.rng.random() < chance:
                delay = MINUTE_MS + int(self.rng.expovariate(1 / (40 * MINUTE_MS)))
                self.seq += 1
                heapq.heappush(self.pending, (at + delay, self.seq, target, actor))
        return _event("follow", actor, at, target)

    def follow_backs_until(self, at: int) -> None:
        while self.pending and self.pending[0][0] <= at:
            fb_at, _, follower, followee = heapq.heappop(self.pending)
            if followee not in self.follows_set[follower] and self.can_receive_follow(
                followee, fb_at
            ):
                self.out.append(self.follow(follower, followee, fb_at))

    def text_for(self, actor: str) -> str:
        return unused_sentence(self.rng, self.used_text.setdefault(actor, set()))


def _attach_snapshots(rng: Random, events: Sequence[Event], pop: Population) -> None:
    """Give organic actors a profile snapshot on most events, counts current at event time."""
    created = pop.created_at_ms
    counts = {uid: [pop.followers[uid], pop.following[uid], pop.posts[uid]] for uid in pop.ids}
    for event in events:
        actor = event["actor_id"]
        target = event.get("target_id")
        kind = event["type"]
        assert isinstance(actor, str)
        mine = counts.get(actor)
        theirs = counts.get(target) if isinstance(target, str) else None
        if kind == "follow":
            if mine is not None:
                mine[1] += 1
            if theirs is not None:
                theirs[0] += 1
        elif kind == "unfollow":
            if mine is not None:
                mine[1] = max(0, mine[1] - 1)
            if theirs is not None:
                theirs[0] = max(0, theirs[0] - 1)
        elif kind == "post" and mine is not None:
            mine[2] += 1
        if mine is not None and "actor" not in event and rng.random() < SNAPSHOT_SHARE:
            event["actor"] = _snapshot(created[actor], mine[0], mine[1], mine[2])


# --------------------------------------------------------------------- retweet-request spam

_REQUEST_TEMPLATES = (
    "please RT my pinned post",
    "can you share this?",
    "RT this pls 🙏",
    "help spread the word and share my thread!",
    "give my thread a RT",
    "would you retweet my latest post?",
    "pls repost this, it means a lot",
    "could you boost my new video?",
    "retweet if you agree!!",
    "kindly share my pinned tweet with your followers",
    "please retweet my giveaway post",
    "would you mind retweeting my latest post?",
    "RT my pinned post and I'll follow back",
    "share this with everyone you know",
)
_REQUEST_PREFIXES = ("", "hey,", "hi!", "yo", "Hello friend,", "omg")
_REQUEST_SUFFIXES = ("", " 🙏", " thanks!!", " ❤️")


def retweet_request_campaign(
    rng: Random,
    requester: str,
    strangers: Sequence[str],
    start_ms: int,
    *,
    span_ms: int = 40 * MINUTE_MS,
    scenario: str = "retweet_request_campaign",
) -> Injection:
    """`requester` asks each stranger once, by mention or reply, to RT/share its content.

    The strangers must never have followed or engaged the requester (the caller picks them).
    Wording varies so every request is a distinct text: a campaign is not duplicate spam.
    Expected severity follows the most distinct strangers asked within 1 h (defaults: 1 low,
    3 medium, 10 high).
    """
    account = _Account(
        start_ms - rng.randint(20, 200) * DAY_MS,
        rng.randint(10, 120),
        rng.randint(300, 1500),
        rng.randint(5, 60),
    )
    templates = list(_REQUEST_TEMPLATES)
    rng.shuffle(templates)
    variants = list(itertools.product(_REQUEST_PREFIXES, _REQUEST_SUFFIXES))
    rng.shuffle(variants)
    events: list[Event] = []
    pinned = f"{requester}-p{account.posts + 1}"
    account.posts += 1
    events.append(
        _event(
            "post",
            requester,
            start_ms - 10 * MINUTE_MS,
            text="New giveaway is live, details in the thread below",
            post_id=pinned,
            snapshot=account.snapshot(),
        )
    )
    asked: list[tuple[int, str]] = []
    times = _spread(rng, start_ms, span_ms, len(strangers))
    for i, (at, stranger) in enumerate(zip(times, strangers, strict=True)):
        # Each template once per round, with a new prefix/suffix per round: the first
        # 14 x 24 requests are distinct texts (past that a campaign is duplicate spam too).
        rounds, j = divmod(i, len(templates))
        template = templates[j]
        prefix, suffix = variants[(rounds + j) % len(variants)]
        body = " ".join(p for p in (prefix, template) if p) + suffix
        if rng.random() < 0.5:
            event = _event(
                "mention",
                requester,
                at,
                stranger,
                text=f"@{stranger} {body}",
                snapshot=account.snapshot(),
            )
        else:
            post = f"{stranger}-p{rng.randint(1, 500)}"
            event = _event(
                "reply",
                requester,
                at,
                stranger,
                text=body,
                post_id=post,
                snapshot=account.snapshot(),
            )
        events.append(event)
        asked.append((at, stranger))
    peak = _peak_distinct(asked, RT_WINDOW_MS)
    expected: list[ExpectedAlert] = []
    if peak >= 1:
        severity: SeverityName = (
            "high"
            if peak >= RT_HIGH_STRANGERS
            else "medium"
            if peak >= RT_MEDIUM_STRANGERS
            else "low"
        )
        expected.append(
            ExpectedAlert(scenario, "unsolicited_retweet_request", requester, True, severity)
        )
    return Injection(events, expected)


def friend_retweet_request(
    rng: Random,
    requester: str,
    friend: str,
    start_ms: int,
    *,
    acquaintance: Literal["follow", "retweet", "reply", "mention"] = "follow",
    acquainted_before_ms: int = 3 * HOUR_MS,
    scenario: str = "friend_retweet_request",
) -> Injection:
    """Near-miss: a request to a friend who follows or engaged the requester earlier.

    Emits the friend's `acquaintance` event `acquainted_before_ms` before the request, so the
    relationship is visible in the stream. A favour between acquaintances: no alert.
    """
    account = _established(rng, start_ms)
    known_at = start_ms - acquainted_before_ms
    events: list[Event] = []
    old_post = f"{requester}-p{account.posts}"
    events.append(
        _event(
            "post",
            requester,
            known_at - 20 * MINUTE_MS,
            text="Wrote up my notes from the trip, long read",
            post_id=old_post,
            snapshot=account.snapshot(),
        )
    )
    if acquaintance == "follow":
        events.append(_event("follow", friend, known_at, requester))
        account.followers += 1
    elif acquaintance == "retweet":
        events.append(_event("retweet", friend, known_at, requester, post_id=old_post))
    elif acquaintance == "reply":
        events.append(
            _event(
                "reply",
                friend,
                known_at,
                requester,
                post_id=old_post,
                text="This was a great read, thanks for writing it up",
            )
        )
    else:
        events.append(
            _event(
                "mention", friend, known_at, requester, text=f"Loved the trip notes by @{requester}"
            )
        )
    account.posts += 1
    new_post = f"{requester}-p{account.posts}"
    events.append(
        _event(
            "post",
            requester,
            start_ms - 5 * MINUTE_MS,
            text="Part two of the trip notes is up",
            post_id=new_post,
            snapshot=account.snapshot(),
        )
    )
    events.append(
        _event(
            "mention",
            requester,
            start_ms,
            friend,
            text=f"@{friend} please RT my new post",
            snapshot=account.snapshot(),
        )
    )
    return Injection(
        events, [ExpectedAlert(scenario, "unsolicited_retweet_request", requester, False, None)]
    )


_NOT_REQUESTS = (
    "RT @{target}: big news, the new stadium opens in May",
    "@{target} thanks for the RT!",
    "@{target} I retweeted your thread, great read",
)


def non_request_mentions(
    rng: Random,
    sender: str,
    strangers: Sequence[str],
    start_ms: int,
    *,
    span_ms: int = 30 * MINUTE_MS,
    scenario: str = "non_request_mentions",
) -> Injection:
    """Near-miss: texts that mention RT or retweeting but ask nothing, sent to strangers."""
    account = _established(rng, start_ms)
    events = [
        _event(
            "mention",
            sender,
            at,
            stranger,
            text=_NOT_REQUESTS[i % len(_NOT_REQUESTS)].format(target=stranger),
            snapshot=account.snapshot(),
        )
        for i, (at, stranger) in enumerate(
            zip(_spread(rng, start_ms, span_ms, len(strangers)), strangers, strict=True)
        )
    ]
    return Injection(
        events, [ExpectedAlert(scenario, "unsolicited_retweet_request", sender, False, None)]
    )


# ----------------------------------------------------------------------------- follower spike


def _baseline_follows(
    rng: Random, subject: str, followers: Sequence[str], before_ms: int, span_ms: int
) -> list[Event]:
    # Ordinary gain spread over the hours before, ending a window early so it stays baseline.
    end = before_ms - SPIKE_WINDOW_MS
    times = _spread(rng, end - span_ms, span_ms, len(followers))
    return [_event("follow", f, at, subject) for at, f in zip(times, followers, strict=True)]


def _fake_names(prefix: str, count: int) -> list[str]:
    """`prefix0001` … numbered with at least four digits, so that names sort in order."""
    width = max(4, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def follower_pool_purchase(
    rng: Random,
    customers: Sequence[str],
    start_ms: int,
    *,
    followers: int = 60,
    span_ms: int = 10 * MINUTE_MS,
    fake_prefix: str = "pool-",
    scenario: str = "follower_pool_purchase",
) -> Injection:
    """One pool of `followers` camouflaged fakes sold to several `customers` at once: each
    fake, at its own time within `span_ms`, follows every customer in a random order, seconds
    to two minutes apart. The fakes look like ordinary years-old accounts (balanced counts,
    posts), so nothing but their moving together (lockstep, as in CopyCatch) gives them away.

    Expected: a follower_spike on every customer whose 10-minute peak reaches the floor at full
    relief (the first customer a fake follows shows nothing shared yet, but each customer comes
    later than another in most fakes' orders)."""
    fakes = _fake_names(fake_prefix, followers)
    events: list[Event] = []
    for fake, at in zip(fakes, _spread(rng, start_ms, span_ms, followers), strict=True):
        account = _established(rng, start_ms)
        order = rng.sample(list(customers), len(customers))
        for customer in order:
            account.following += 1
            events.append(_event("follow", fake, at, customer, snapshot=account.snapshot()))
            at += rng.randint(2 * SECOND_MS, 2 * MINUTE_MS)
    # The floor at full relief, for the lockstep share reaches 100 % only where every fake
    # came to the customer after another one.
    floor = SPIKE_MIN_FOLLOWS // 2
    expected = [
        ExpectedAlert(scenario, "follower_spike", customer, True, "medium")
        for customer in customers
        if _peak_count([_ms(e) for e in events if e["target_id"] == customer], SPIKE_WINDOW_MS)
        >= floor
    ]
    return Injection(events, expected)


def follower_purchase(
    rng: Random,
    subject: str,
    start_ms: int,
    *,
    followers: int = 150,
    span_ms: int = 8 * MINUTE_MS,
    fake_accounts: Literal["fresh", "dormant", "unseen"] = "fresh",
    fake_prefix: str = "fake-",
    camouflage_targets: Sequence[str] = (),
    camouflage_per_fake: int = 0,
    camouflage_span_ms: int = 6 * HOUR_MS,
    baseline_followers: Sequence[str] = (),
    baseline_span_ms: int = 6 * HOUR_MS,
    scenario: str = "follower_purchase",
) -> Injection:
    """`subject` receives `followers` follows from fake accounts within `span_ms`.

    Fresh fakes: created 1-10 days ago, following ~2000, ~3 followers, no posts. Dormant
    fakes: years old but never posted, following hundreds with a handful of followers.
    Unseen fakes: fresh ones on a platform that sends no profile snapshot.
    Camouflage: before the purchase each fake also follows `camouflage_per_fake` accounts
    drawn from `camouflage_targets` over `camouflage_span_ms` (keep the targets many, or the
    camouflage itself spikes them). `baseline_followers` follow the subject over the hours
    before, giving it an ordinary gain to compare against.

    Expected: a follower_spike (medium; high once the peak is twice the high bar at the floor)
    if the peak 10-min count reaches the spike floor; a slower drip stays under every default
    threshold by design and yields no expectation either way.
    """
    events = _baseline_follows(rng, subject, baseline_followers, start_ms, baseline_span_ms)
    fakes = _fake_names(fake_prefix, followers)
    accounts: list[_Account] = []
    for _ in fakes:
        if fake_accounts != "dormant":
            accounts.append(
                _Account(
                    start_ms - rng.randint(DAY_MS, 10 * DAY_MS),
                    rng.randint(0, 6),
                    rng.randint(1800, 2200),
                    0,
                )
            )
        else:
            accounts.append(
                _Account(
                    start_ms - rng.randint(700, 3000) * DAY_MS,
                    rng.randint(0, 5),
                    rng.randint(300, 1500),
                    0,
                )
            )

    def seen(account: _Account) -> Event | None:
        return None if fake_accounts == "unseen" else account.snapshot()

    cover = [t for t in camouflage_targets if t != subject]
    if cover and camouflage_per_fake > 0:
        k = min(camouflage_per_fake, len(cover))
        for fake, account in zip(fakes, accounts, strict=True):
            picks = rng.sample(cover, k)
            times = _spread(rng, start_ms - camouflage_span_ms, camouflage_span_ms, k)
            for at, target in zip(times, picks, strict=True):
                account.following += 1
                events.append(_event("follow", fake, at, target, snapshot=seen(account)))
    times = _spread(rng, start_ms, span_ms, followers)
    for at, fake, account in zip(times, fakes, accounts, strict=True):
        account.following += 1
        events.append(_event("follow", fake, at, subject, snapshot=seen(account)))
    peak = _peak_count(times, SPIKE_WINDOW_MS)
    expected: list[ExpectedAlert] = []
    if peak >= SPIKE_MIN_FOLLOWS:
        # The high bar is relative to the account's baseline, unknown here: claim high only
        # with a 2x margin over the bar at the floor.
        high = peak >= 2 * SPIKE_HIGH_MULTIPLIER * SPIKE_MIN_FOLLOWS
        expected.append(
            ExpectedAlert(scenario, "follower_spike", subject, True, "high" if high else "medium")
        )
    return Injection(events, expected)


def organic_follower_bump(
    rng: Random,
    subject: str,
    followers: Sequence[str],
    start_ms: int,
    *,
    span_ms: int = 10 * MINUTE_MS,
    baseline_followers: Sequence[str] = (),
    baseline_span_ms: int = 6 * HOUR_MS,
    scenario: str = "organic_follower_bump",
) -> Injection:
    """Near-miss: an account goes viral and gains real followers fast.

    `followers` should be established accounts (the caller's; in `generate_traffic` organic
    users, whose snapshots show old, balanced, posting accounts): above the spike floor, but
    not bought, so no follower_spike.
    """
    events = _baseline_follows(rng, subject, baseline_followers, start_ms, baseline_span_ms)
    times = _spread(rng, start_ms, span_ms, len(followers))
    events.extend(_event("follow", f, at, subject) for at, f in zip(times, followers, strict=True))
    return Injection(events, [ExpectedAlert(scenario, "follower_spike", subject, False, None)])


# ------------------------------------------------------------------------------ follow churn


def follow_churn(
    rng: Random,
    churner: str,
    targets: Sequence[str],
    start_ms: int,
    *,
    span_ms: int = 12 * HOUR_MS,
    unfollows: int = 70,
    unfollow_after_ms: tuple[int, int] = (HOUR_MS, 8 * HOUR_MS),
    follow_backs: int = 5,
    scenario: str = "follow_churn",
) -> Injection:
    """Follow-back farming: follow every target over `span_ms`, unfollow most soon after.

    `follow_backs` targets follow the churner back minutes after its follow (before any
    unfollow). Expected: follow_churn when the churned pairs (unfollow within 24 h of the
    follow) reach 50 in some 24 h window with a follow-back rate of at most 0.5; medium, high
    at 4x.
    """
    account = _Account(
        start_ms - rng.randint(100, 900) * DAY_MS,
        rng.randint(200, 900),
        rng.randint(2500, 4000),
        rng.randint(20, 300),
    )
    n = len(targets)
    unfollowed = set(rng.sample(range(n), min(unfollows, n)))
    backers = set(rng.sample(range(n), min(follow_backs, n)))
    events: list[Event] = []
    churned: list[int] = []
    for i, (at, target) in enumerate(zip(_spread(rng, start_ms, span_ms, n), targets, strict=True)):
        account.following += 1
        events.append(_event("follow", churner, at, target, snapshot=account.snapshot()))
        if i in backers:
            events.append(_event("follow", target, at + rng.randint(2, 50) * MINUTE_MS, churner))
        if i in unfollowed:
            off_at = at + rng.randint(*unfollow_after_ms)
            account.following -= 1
            events.append(_event("unfollow", churner, off_at, target, snapshot=account.snapshot()))
            if off_at - at <= CHURN_WITHIN_MS:
                churned.append(off_at)
    peak = _peak_count(churned, CHURN_WINDOW_MS)
    rate = len(backers) / n if n else 0.0
    expected: list[ExpectedAlert] = []
    if peak >= CHURN_MIN_PAIRS and rate <= CHURN_MAX_FOLLOW_BACK_RATE:
        high = peak >= CHURN_HIGH_MULTIPLIER * CHURN_MIN_PAIRS
        expected.append(
            ExpectedAlert(scenario, "follow_churn", churner, True, "high" if high else "medium")
        )
    return Injection(events, expected)


def selective_unfollows(
    rng: Random,
    actor: str,
    targets: Sequence[str],
    start_ms: int,
    *,
    unfollows: int = 5,
    span_ms: int = 2 * HOUR_MS,
    scenario: str = "selective_unfollows",
) -> Injection:
    """Near-miss: someone follows a dozen accounts and drops a few within hours."""
    account = _established(rng, start_ms)
    dropped = set(rng.sample(range(len(targets)), min(unfollows, len(targets))))
    events: list[Event] = []
    for i, (at, target) in enumerate(
        zip(_spread(rng, start_ms, span_ms, len(targets)), targets, strict=True)
    ):
        account.following += 1
        events.append(_event("follow", actor, at, target, snapshot=account.snapshot()))
        if i in dropped:
            account.following -= 1
            events.append(
                _event(
                    "unfollow",
                    actor,
                    at + rng.randint(HOUR_MS, 5 * HOUR_MS),
                    target,
                    snapshot=account.snapshot(),
                )
            )
    return Injection(events, [ExpectedAlert(scenario, "follow_churn", actor, False, None)])


# ---------------------------------------------------------------------- duplicate replies

DEFAULT_PITCH = "Earn $500 a day from home with this one simple trick, no experience needed:"


_EMOJI = ("🔥", "💯", "🚀", "💰", "✅", "👇", "🤑", "")
_ENDINGS = ("", "!", "!!", "!!!", ".", "?!", " :)")
# One word of a pitch swapped for another, as spammers do to slip past exact matching.
_SWAPS = {
    "earn": ("make", "get"),
    "day": ("week", "night"),
    "simple": ("easy", "weird"),
    "trick": ("method", "hack"),
    "needed": ("required",),
    "grow": ("boost",),
    "fast": ("quickly", "today"),
}


def _reword(rng: Random, pitch: str) -> str:
    words = pitch.split(" ")
    swappable = [i for i, word in enumerate(words) if word.strip(",.:!?$").lower() in _SWAPS]
    if swappable and rng.random() < 0.7:
        i = rng.choice(swappable)
        bare = words[i].strip(",.:!?$")
        words[i] = words[i].replace(bare, rng.choice(_SWAPS[bare.lower()]))
    text = re.sub(r"\d+", lambda _: str(rng.choice((100, 250, 500, 700, 1000))), " ".join(words))
    return f"{text.rstrip(',.:!?')}{rng.choice(_ENDINGS)} {rng.choice(_EMOJI)}".rstrip()


def _vary_case_and_spacing(rng: Random, text: str) -> str:
    style = rng.randrange(4)
    if style == 1:
        text = text.upper()
    elif style == 2:
        text = text.lower()
    elif style == 3:
        text = "".join(c.upper() if rng.random() < 0.3 else c for c in text)
    words = text.split(" ")
    return "".join(w + rng.choice((" ", " ", "  ", "\t", " \n")) for w in words).rstrip() + (
        " " if rng.random() < 0.3 else ""
    )


def duplicate_reply_spam(
    rng: Random,
    spammer: str,
    targets: Sequence[str],
    start_ms: int,
    *,
    span_ms: int = 40 * MINUTE_MS,
    pitch: str = DEFAULT_PITCH,
    url_base: str = "https://bit.ly/abc",
    scenario: str = "duplicate_reply_spam",
    reword: bool = False,
) -> Injection:
    """The same pitch to many targets, varied only in case, whitespace, URL and @mention.

    The mention and URL stay in the same place, so the texts are identical once normalized;
    with `reword`, each text also varies its emoji, punctuation, numbers and often one word
    (near-duplicates: the contract makes them one text).
    The pitch asks for no share (this scenario must not double as a retweet request).
    Expected: duplicate_reply_spam when ≥ 5 distinct targets fall within 1 h; medium, high at
    4x.
    """
    account = _Account(
        start_ms - rng.randint(3, 60) * DAY_MS,
        rng.randint(0, 40),
        rng.randint(50, 600),
        rng.randint(0, 30),
    )
    events: list[Event] = []
    sent: list[tuple[int, str]] = []
    times = _spread(rng, start_ms, span_ms, len(targets))
    for i, (at, target) in enumerate(zip(times, targets, strict=True)):
        body = _reword(rng, pitch) if reword else pitch
        text = f"@{target} {_vary_case_and_spacing(rng, body)} {url_base}{i + 1}"
        if rng.random() < 0.5:
            events.append(
                _event(
                    "reply",
                    spammer,
                    at,
                    target,
                    text=text,
                    post_id=f"{target}-p{rng.randint(1, 500)}",
                    snapshot=account.snapshot(),
                )
            )
        else:
            events.append(
                _event("mention", spammer, at, target, text=text, snapshot=account.snapshot())
            )
        sent.append((at, target))
    peak = _peak_distinct(sent, DUPLICATE_WINDOW_MS)
    expected: list[ExpectedAlert] = []
    if peak >= DUPLICATE_MIN_TARGETS:
        high = peak >= DUPLICATE_HIGH_MULTIPLIER * DUPLICATE_MIN_TARGETS
        expected.append(
            ExpectedAlert(
                scenario, "duplicate_reply_spam", spammer, True, "high" if high else "medium"
            )
        )
    return Injection(events, expected)


def thank_you_replies(
    rng: Random,
    actor: str,
    new_followers: Sequence[str],
    start_ms: int,
    *,
    text: str = "Thank you so much for the follow!",
    scenario: str = "thank_you_replies",
) -> Injection:
    """Near-miss: each new follower gets the same courtesy; a handful is not spam."""
    account = _established(rng, start_ms)
    events: list[Event] = []
    for at, follower in zip(
        _spread(rng, start_ms, 20 * MINUTE_MS, len(new_followers)), new_followers, strict=True
    ):
        events.append(_event("follow", follower, at, actor))
        account.followers += 1
        events.append(
            _event(
                "mention",
                actor,
                at + rng.randint(2, 15) * MINUTE_MS,
                follower,
                text=f"@{follower} {text}",
                snapshot=account.snapshot(),
            )
        )
    return Injection(events, [ExpectedAlert(scenario, "duplicate_reply_spam", actor, False, None)])


# ---------------------------------------------------------------------------- the whole day


def finalize_events(raw: Iterable[Event], *, id_prefix: str, rng: Random) -> list[Event]:
    """Sort raw events by time (stable), number them, and write ~20 % of times as epoch ms.

    Ids are assigned in sorted order, so the result is sorted by (occurred_at, event_id) as
    long as the numbering fits its 7 digits (10 M events).
    """
    out: list[Event] = []
    for n, event in enumerate(sorted(raw, key=_ms), start=1):
        at = _ms(event)
        row: Event = {"event_id": f"{id_prefix}{n:07d}"}
        for key, value in event.items():
            row[key] = value
        row["occurred_at"] = format_timestamp(at) if rng.random() < STRING_TIME_SHARE else at
        out.append(row)
    return out


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def generate_traffic(
    seed: int,
    *,
    users: int = 2000,
    hours: float = 24.0,
    organic_events: int = 40_000,
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC),
) -> Traffic:
    """Organic background with every scenario and near-miss injected at seeded times.

    Scenarios start after the first hour (so baselines exist) and are fitted inside `hours`
    where their duration allows; the churn scenario needs ~20 h, so with a short `hours` its
    tail runs past the end. Needs `MIN_USERS` organic users to draw distinct participants
    (about 200 take part in scenarios).
    """
    if users < MIN_USERS:
        raise ValueError(f"generate_traffic needs users >= {MIN_USERS} to draw participants")
    start_ms = _epoch_ms(start)
    span_ms = int(hours * HOUR_MS)
    pop, organic = organic_traffic(
        Random(f"{seed}/organic"),
        users=users,
        start_ms=start_ms,
        span_ms=span_ms,
        events=organic_events,
    )
    rng = Random(f"{seed}/scenarios")

    def when(duration_ms: int, earliest_ms: int = HOUR_MS) -> int:
        latest = max(earliest_ms, span_ms - duration_ms)
        return start_ms + rng.randint(earliest_ms, latest)

    # Accounts organic traffic followed in-stream, so a bump follower is truly new.
    stream_followers: dict[str, set[str]] = {}
    for event in organic:
        if event["type"] == "follow":
            stream_followers.setdefault(str(event["target_id"]), set()).add(str(event["actor_id"]))

    top = pop.by_popularity[0]
    # Participants: distinct ordinary accounts, never the 50 most popular, so each scenario's
    # evidence is its own and the top account stays a clean near-miss.
    pool = pop.by_popularity[50:]
    rng.shuffle(pool)
    taken = 0

    def draw(k: int) -> list[str]:
        nonlocal taken
        picked = pool[taken : taken + k]
        taken += k
        return picked

    # Middling accounts for the follower scenarios: established, modest audiences.
    bought, viral = draw(1)[0], draw(1)[0]
    # Fakes also follow popular accounts to look real; never the bump's subject, whose
    # near-miss must stay all-established.
    camouflage = [uid for uid in pop.by_popularity[:200] if uid not in (bought, viral)]

    def new_followers(subject: str, k: int) -> list[str]:
        nonlocal taken
        chosen: list[str] = []
        while len(chosen) < k:
            uid = pool[taken]
            taken += 1
            if subject not in pop.initial_following[uid] and uid not in stream_followers.get(
                subject, set()
            ):
                chosen.append(uid)
        return chosen

    parts: list[Injection] = []
    parts.append(retweet_request_campaign(rng, "spam-rt-1", draw(12), when(40 * MINUTE_MS)))
    parts.append(retweet_request_campaign(rng, "spam-rt-2", draw(4), when(40 * MINUTE_MS)))
    parts.append(retweet_request_campaign(rng, "spam-rt-3", draw(1), when(40 * MINUTE_MS)))

    attack = when(10 * MINUTE_MS, earliest_ms=2 * HOUR_MS)
    parts.append(
        follower_purchase(
            rng,
            bought,
            attack,
            followers=150,
            span_ms=8 * MINUTE_MS,
            fake_accounts="fresh",
            fake_prefix="fake-",
            camouflage_targets=camouflage,
            camouflage_per_fake=2,
            camouflage_span_ms=min(6 * HOUR_MS, attack - start_ms - MINUTE_MS),
            baseline_followers=new_followers(bought, 12),
            baseline_span_ms=attack - start_ms - SPIKE_WINDOW_MS - MINUTE_MS,
        )
    )
    parts.append(follow_churn(rng, "churn-1", draw(80), when(20 * HOUR_MS)))
    parts.append(duplicate_reply_spam(rng, "dupe-1", draw(8), when(40 * MINUTE_MS)))

    parts.append(
        friend_retweet_request(
            rng, "nm-friend-1", draw(1)[0], when(0, earliest_ms=4 * HOUR_MS), acquaintance="follow"
        )
    )
    parts.append(
        friend_retweet_request(
            rng, "nm-friend-2", draw(1)[0], when(0, earliest_ms=4 * HOUR_MS), acquaintance="retweet"
        )
    )
    parts.append(non_request_mentions(rng, "nm-quote-1", draw(3), when(30 * MINUTE_MS)))
    bump = when(10 * MINUTE_MS, earliest_ms=2 * HOUR_MS)
    parts.append(
        organic_follower_bump(
            rng,
            viral,
            new_followers(viral, 45),
            bump,
            baseline_followers=new_followers(viral, 10),
            baseline_span_ms=bump - start_ms - SPIKE_WINDOW_MS - MINUTE_MS,
        )
    )
    parts.append(selective_unfollows(rng, "nm-pruner-1", draw(12), when(7 * HOUR_MS)))
    parts.append(thank_you_replies(rng, "nm-thanks-1", draw(2), when(40 * MINUTE_MS)))
    # A camouflaged pool sold to three customers at once (lockstep); last, with a generator
    # of its own, so that it moves none of the scenarios above.
    pool_rng = Random(f"{seed}/pool")
    parts.append(
        follower_pool_purchase(
            pool_rng,
            [f"pool-customer-{k}" for k in (1, 2, 3)],
            start_ms + pool_rng.randrange(max(1, span_ms - 20 * MINUTE_MS)),
            followers=60,
            span_ms=10 * MINUTE_MS,
            fake_prefix="pool-fake-",
            scenario="follower_pool_purchase",
        )
    )
    # The most followed organic account gains steadily all day: not a spike.
    parts.append(
        Injection([], [ExpectedAlert("popular_steady_gain", "follower_spike", top, False, None)])
    )

    raw = organic + [e for part in parts for e in part.events]
    raw.sort(key=_ms)
    _attach_snapshots(Random(f"{seed}/snapshots"), raw, pop)
    events = finalize_events(raw, id_prefix=f"g{seed}-", rng=Random(f"{seed}/format"))
    return Traffic(events, [x for part in parts for x in part.expected])


def write_jsonl(rows: Iterable[dict[str, object]], out: BinaryIO) -> int:
    """Write one JSON object per line; returns the number of lines written."""
    count = 0
    for row in rows:
        out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count
