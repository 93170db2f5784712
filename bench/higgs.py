"""The real Higgs Twitter week as Reciprocity events, plus organic follows from its graph.

Read in place from `../shared/data/higgs/` (never copied). Two files:

- `higgs-activity_time.txt.gz`: `userA userB unix_seconds RT|MT|RE`, 563,069 lines, not
  sorted. Twitter's data lists one tweet under several codes: a reply to B is an RE line *and*
  an MT line for the same (A, B, second), a retweet of B is sometimes RT *and* MT. Each
  (A, B, second) therefore becomes one event: `reply` if any of its lines is RE, else
  `retweet` if any is RT, else `mention`. Self-targeted lines (A = B) are kept: valid events
  that change no state (contract).
- `higgs-social_network-fragment.edgelist.gz`: a fragment of the follower graph
  (`userA userB`: A follows B), no timestamps.

Event mapping: `actor_id` = userA, `target_id` = userB (decimal ids as strings),
`occurred_at` = unix_seconds x 1000, `event_id` = `h<seconds>-<A>-<B>-<rt|re|mt>`
(deterministic, unique because each (A, B, second) is one event). No `post_id`, no `actor`
profile snapshot: the data has neither. Without snapshots an organic follower can look bought
only by following at a high rate itself (≥ 60 follows in an hour), which no real account here
does; the follower_spike false-alert figure therefore rests on the burst sizes alone, and the
benchmark reports the busiest 10 minutes of organic follower gain next to the rule's floor.

**Texts.** The data has no text. Replies and mentions need one (duplicate_reply_spam and
unsolicited_retweet_request read it). Every tweet, i.e. every (A, second) group of reply and
mention lines, gets ONE text: the @handles of every account it addresses, then a sentence from
`devtools.generate`'s organic word lists (~10^6 sentences, none asks for a share), drawn from a
generator seeded by the run seed and never repeated by the same author. So a tweet that
mentions five people is five mention events with the same text, as a platform would emit them;
different tweets never share a text. `--tweet-text distinct` gives every event its own
sentence instead. Organic texts never ask for a retweet: unsolicited_retweet_request false
alerts on the untouched week are zero by construction and say nothing about the phrase list.

**Organic follows.** The stream has none; they are drawn from the follower-graph fragment, for
its users only. A graph accumulated over accounts' lifetimes (a few years in 2012) gains about
1 % of its edges in a given week if it grew steadily; the Higgs announcement week drew extra
attention, so by default each fragment edge is emitted as a `follow` during the week with
probability 2 % (`follow_share`, ~7,000 follows, about 1.3 per following account). When the
followed account received retweets, mentions or replies during the week, half of its new
follows come shortly after one of those (exponential delay, mean 30 min: people follow whom
they just saw retweeted), which reproduces real attention bursts; the rest, and all follows of
accounts with no activity, follow the week's overall rhythm (times drawn from the activity
stream's timestamps: the daily cycle and the 4 July announcement peak). Follow ids are
`f<A>-<B>`. This much is the `plain` model (`--organic plain`, the figures before 2 Dec 2026).

**The harder week** (`--organic harder`, the default) adds what makes false alerts possible:
- *Follower bursts from retweet cascades.* A retweeter follows the author it retweeted with
  probability 3 % (`c<A>-<B>`, after an exponential delay, mean 30 min), and each of the
  retweeter's own followers in the graph fragment follows the author with probability 0.2 %
  (mean delay 2 h): an author retweeted a thousand times in an hour gains follows by the
  hundred over the next hours, as real viral accounts do.
- *Profile snapshots* on 30 % of organic events, one fixed profile per account drawn from
  skewed distributions: followers and following log-normal (medians 60 and 150, so most
  accounts follow more than follow them, and some follow ten times more), 6 % never posted,
  4 % created in the last 30 days. So organic followers show every low-quality sign at
  realistic rates.
- *Organic unfollows*: 3 % of organic follows are undone after an exponential delay (mean
  2 days) if it falls in the week (`u<A>-<B>`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Literal

from service.core.models import ActorSnapshot, Event, EventType
from service.devtools.generate import REPLY_OPENERS, unused_sentence  # the organic word lists

__all__ = [
    "DEFAULT_DATA_DIR",
    "Activity",
    "Graph",
    "Harder",
    "OrganicModel",
    "Row",
    "load_activity",
    "load_graph",
    "organic_rows",
    "row_event",
    "sha256",
]

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "higgs"
ACTIVITY_FILE = "higgs-activity_time.txt.gz"
GRAPH_FILE = "higgs-social_network-fragment.edgelist.gz"

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_KIND_CODE = {"reply": "re", "retweet": "rt", "mention": "mt"}
TweetText = Literal["shared", "distinct"]
OrganicModel = Literal["harder", "plain"]

# (occurred_at ms, event_id, type, actor, target, text, actor snapshot): sorted by (ms, id).
Row = tuple[int, str, str, str, str, str | None, dict[str, int] | None]


@dataclass(frozen=True)
class Harder:
    """The harder week's parameters (module docstring)."""

    retweeter_follows: float = 0.03
    retweeter_follows_delay_ms: int = 30 * MINUTE_MS
    reach_follows: float = 0.002
    reach_follows_delay_ms: int = 2 * HOUR_MS
    snapshot_share: float = 0.3
    never_posted: float = 0.06
    new_accounts: float = 0.04
    unfollow_share: float = 0.03
    unfollow_delay_ms: int = 2 * DAY_MS


@dataclass
class Activity:
    """The activity stream, merged to one interaction per (A, B, second), sorted."""

    interactions: list[tuple[int, int, int, str]]  # (seconds, A, B, kind)
    lines: int
    lines_by_code: dict[str, int]
    start_ms: int  # the slice's bounds (the week's first and last second unless sliced)
    end_ms: int
    received: dict[int, list[int]] = field(default_factory=dict)  # B -> sorted seconds

    @property
    def days(self) -> float:
        return (self.end_ms - self.start_ms) / DAY_MS

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for _, _, _, kind in self.interactions:
            counts[kind] += 1
        return dict(counts)


@dataclass
class Graph:
    edges: list[tuple[int, int]]  # A follows B, self-loops and repeats removed, file order
    lines: int

    def in_degree(self) -> dict[int, int]:
        deg: dict[int, int] = defaultdict(int)
        for _, b in self.edges:
            deg[b] += 1
        return dict(deg)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _lines(path: Path) -> Iterator[bytes]:
    with gzip.open(path, "rb") as f:
        yield from f


def load_activity(path: Path, *, hours: float | None = None) -> Activity:
    """Parse, merge and sort; `hours` keeps only the first hours of the week (a quick slice)."""
    codes: dict[tuple[int, int, int], set[bytes]] = defaultdict(set)
    by_code: dict[str, int] = defaultdict(int)
    lines = 0
    first = last = None
    for line in _lines(path):
        parts = line.split()
        if len(parts) != 4:
            continue
        lines += 1
        a, b, t, code = int(parts[0]), int(parts[1]), int(parts[2]), parts[3]
        by_code[code.decode()] += 1
        codes[(t, a, b)].add(code)
        first = t if first is None or t < first else first
        last = t if last is None or t > last else last
    if first is None or last is None:
        raise ValueError(f"{path}: no activity lines")
    cut = last if hours is None else min(last, first + int(hours * 3600))
    interactions = []
    for (t, a, b), kinds in codes.items():
        if t > cut:
            continue
        kind = "reply" if b"RE" in kinds else "retweet" if b"RT" in kinds else "mention"
        interactions.append((t, a, b, kind))
    interactions.sort()
    received: dict[int, list[int]] = defaultdict(list)
    for t, a, b, _ in interactions:
        if a != b:
            received[b].append(t)  # already in time order
    end_ms = (cut + 1) * 1000 if hours is not None else last * 1000
    return Activity(interactions, lines, dict(by_code), first * 1000, end_ms, dict(received))


def load_graph(path: Path) -> Graph:
    seen: set[tuple[int, int]] = set()
    edges: list[tuple[int, int]] = []
    lines = 0
    for line in _lines(path):
        parts = line.split()
        if len(parts) != 2:
            continue
        lines += 1
        edge = (int(parts[0]), int(parts[1]))
        if edge[0] != edge[1] and edge not in seen:
            seen.add(edge)
            edges.append(edge)
    return Graph(edges, lines)


class _Texts:
    """Sentences from generate's word lists, never the same one twice from an author."""

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.used: dict[int, set[str]] = defaultdict(set)

    def sentence(self, author: int) -> str:
        return unused_sentence(self.rng, self.used[author])

    def tweet(self, author: int, addressed: Iterable[int], reply: bool) -> str:
        body = self.sentence(author)
        if reply:
            opener = self.rng.choice(REPLY_OPENERS)
            if opener:
                body = f"{opener} {body[0].lower()}{body[1:]}"
        handles = " ".join(f"@{b}" for b in addressed)
        return f"{handles} {body}"


def _activity_rows(activity: Activity, rng: Random, tweet_text: TweetText) -> list[Row]:
    texts = _Texts(rng)
    rows: list[Row] = []
    inter = activity.interactions
    i = 0
    n = len(inter)
    while i < n:
        # One second of one author: its replies and mentions are one tweet.
        t, a = inter[i][0], inter[i][1]
        j = i
        while j < n and inter[j][0] == t and inter[j][1] == a:
            j += 1
        group = inter[i:j]
        addressed = [b for _, _, b, kind in group if kind != "retweet"]
        shared = None
        if addressed and tweet_text == "shared":
            is_reply = any(kind == "reply" for _, _, _, kind in group)
            shared = texts.tweet(a, addressed, is_reply)
        for _, _, b, kind in group:
            text = None
            if kind != "retweet":
                text = shared if shared is not None else texts.tweet(a, [b], kind == "reply")
            rows.append(
                (t * 1000, f"h{t}-{a}-{b}-{_KIND_CODE[kind]}", kind, str(a), str(b), text, None)
            )
        i = j
    return rows


def _follow_rows(
    activity: Activity,
    graph: Graph,
    rng: Random,
    follow_share: float,
    attention_share: float,
    attention_delay_ms: int,
) -> list[Row]:
    start, end = activity.start_ms, activity.end_ms
    week_fraction = (end - start) / (7 * DAY_MS)
    p = min(1.0, follow_share * week_fraction)
    everyone = [t for t, _, _, _ in activity.interactions]
    received = activity.received
    rows: list[Row] = []
    for a, b in graph.edges:
        if rng.random() >= p:
            continue
        at = -1
        seen = received.get(b)
        if seen and rng.random() < attention_share:
            at = rng.choice(seen) * 1000 + int(rng.expovariate(1 / attention_delay_ms))
        if not start <= at <= end:
            at = rng.choice(everyone) * 1000 + rng.randrange(1000)
            at = min(at, end)
        rows.append((at, f"f{a}-{b}", "follow", str(a), str(b), None, None))
    return rows


def _cascade_rows(activity: Activity, graph: Graph, rng: Random, harder: Harder) -> list[Row]:
    """Follows that retweets bring the retweeted author: from the retweeters, and from the
    retweeters' own followers."""
    followers: dict[int, list[int]] = defaultdict(list)
    for a, b in graph.edges:
        followers[b].append(a)
    seen: set[tuple[int, int]] = set()
    rows: list[Row] = []
    end = activity.end_ms

    def follow(a: int, b: int, at: int, prefix: str) -> None:
        if a != b and at <= end and (a, b) not in seen:
            seen.add((a, b))
            rows.append((at, f"{prefix}{a}-{b}", "follow", str(a), str(b), None, None))

    for t, a, b, kind in activity.interactions:
        if kind != "retweet":
            continue
        at = t * 1000
        if rng.random() < harder.retweeter_follows:
            follow(a, b, at + int(rng.expovariate(1 / harder.retweeter_follows_delay_ms)), "c")
        for x in followers.get(a, ()):
            if rng.random() < harder.reach_follows:
                follow(x, b, at + int(rng.expovariate(1 / harder.reach_follows_delay_ms)), "c")
    return rows


def _unfollow_rows(follows: list[Row], end_ms: int, rng: Random, harder: Harder) -> list[Row]:
    rows: list[Row] = []
    for at, _, _, actor, target, _, _ in follows:
        if rng.random() < harder.unfollow_share:
            later = at + int(rng.expovariate(1 / harder.unfollow_delay_ms))
            if later <= end_ms:
                rows.append((later, f"u{actor}-{target}", "unfollow", actor, target, None, None))
    return rows


class _Profiles:
    """One fixed profile per account, drawn from skewed distributions (module docstring)."""

    def __init__(self, seed: int, week_start_ms: int, harder: Harder) -> None:
        self._seed, self._start, self._harder = seed, week_start_ms, harder
        self._cache: dict[str, dict[str, int]] = {}

    def of(self, account: str) -> dict[str, int]:
        profile = self._cache.get(account)
        if profile is None:
            rng = Random(f"{self._seed}/profile/{account}")
            harder = self._harder
            if rng.random() < harder.new_accounts:
                age_days = rng.uniform(1, 30)
            else:
                # Twitter was six years old in July 2012
                age_days = min(2_200.0, 30 + rng.lognormvariate(math.log(900), 0.8))
            posts = (
                0
                if rng.random() < harder.never_posted
                else int(rng.lognormvariate(math.log(800), 1.5))
            )
            profile = {
                "created_at": self._start - int(age_days * DAY_MS),
                "followers_count": int(rng.lognormvariate(math.log(60), 1.5)),
                "following_count": int(rng.lognormvariate(math.log(150), 1.2)),
                "posts_count": posts,
            }
            self._cache[account] = profile
        return profile


def _with_snapshots(rows: list[Row], profiles: _Profiles, rng: Random, share: float) -> list[Row]:
    return [(*row[:6], profiles.of(row[3])) if rng.random() < share else row for row in rows]


def organic_rows(
    activity: Activity,
    graph: Graph,
    *,
    seed: int,
    follow_share: float = 0.02,
    attention_share: float = 0.5,
    attention_delay_ms: int = 30 * MINUTE_MS,
    tweet_text: TweetText = "shared",
    model: OrganicModel = "harder",
    harder: Harder = Harder(),
) -> list[Row]:
    """The untouched week for one seed: real interactions with texts, and organic follows
    (and, in the harder model, cascade follows, unfollows and profile snapshots)."""
    rows = _activity_rows(activity, Random(f"{seed}/higgs-text"), tweet_text)
    follows = _follow_rows(
        activity,
        graph,
        Random(f"{seed}/higgs-follows"),
        follow_share,
        attention_share,
        attention_delay_ms,
    )
    if model == "harder":
        follows += _cascade_rows(activity, graph, Random(f"{seed}/higgs-cascades"), harder)
        follows += _unfollow_rows(
            follows, activity.end_ms, Random(f"{seed}/higgs-unfollows"), harder
        )
    rows += follows
    if model == "harder":
        profiles = _Profiles(seed, activity.start_ms, harder)
        rng = Random(f"{seed}/higgs-snapshots")
        rows = _with_snapshots(rows, profiles, rng, harder.snapshot_share)
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


_TYPES = {kind.value: kind for kind in EventType}


def row_event(row: Row) -> Event:
    at, event_id, kind, actor, target, text, snapshot = row
    return Event(
        event_id=event_id,
        type=_TYPES[kind],
        actor_id=actor,
        target_id=target,
        occurred_at=at,
        text=text,
        actor=ActorSnapshot(**snapshot) if snapshot is not None else None,
    )
