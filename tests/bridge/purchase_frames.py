"""Jetstream frames of a scripted follower purchase on a quiet account, in the format of
tests/bridge/fixtures/*.jsonl (Jetstream's documented JSON wire, one frame a line).

A quiet account, TARGET, posts now and then over six hours; five real accounts (the fixtures'
alice to erin) post, reply to it, repost it, and three of them follow it. Then BOUGHT, twenty
accounts never seen before, each announced by an identity frame (as a new account is) 2 s
before its only commit, follow TARGET one every 25 s, and do nothing else. Each record's
`createdAt` is 350 ms before its frame's `time_us`, as in the fixtures, so it is the event time
(the bridge takes `createdAt` that close to the frame). In minutes after S, the first frame:

    TARGET  posts at 0, 90, 180 and 301
    alice   post 5, reply to TARGET 40, follow 45, replies 345 and 363
    bob     post 20, repost of TARGET 65, reply 125
    carol   post 100, reply 190, follow 200
    dave    post 150, reply 215
    erin    post 250, reply 300, follow 330

    The purchase: bought follow n at 360 min + 25 n s (its event time 350 ms earlier)

    minute       355:50    360:00   362:05   364:10   365:50   366:15   367:55
                    |         |        |        |        |        |        |
    bought n                  0 .. 4   5 .. 9  10 .. 13 14      15 .. 19
    10-min window   (────────────────────────────────────]  at n = 14: 15 follows, all bought:
                                                            fires, medium; 15..19 suppressed
    (erin's follow at 330 is before the window; alice's reply at 363 is no follow)

With no profile snapshot (Jetstream has none), `follower_spike` calls a follower bought when
the stream shows it doing nothing but follow in the past 7 days (`only_follows_in_the_stream`):
every BOUGHT account, and no organic one (each posts before it follows). All the follows of
the 10-minute window are then bought (share 1.0), so its floor of 30 (`min_follows`) falls by
the whole `floor_relief` (0.5) to 15; the target's own baseline (3 follows in 6 h, ×8) is far
below that. The 15th bought follow fires one medium alert (high would take 5 × 15); the five
after it fall in its episode and are not sent again.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import orjson

from service.core.models import format_timestamp
from tests.bridge.jetstream_fixtures import ALICE, BOB, CAROL, DAVE, ERIN, T0, did

TARGET = did("target")
BOUGHT = tuple(did(f"bought{n:02d}") for n in range(20))
ORGANIC = (ALICE, BOB, CAROL, DAVE, ERIN)
ORGANIC_FOLLOWERS = (ALICE, CAROL, ERIN)
FOLLOWERS_IT_TAKES = 15  # min_follows 30 × (1 − floor_relief 0.5), with every follower bought

S = T0  # time_us of the first frame: 2026-05-25T14:23:20Z
MINUTE_US = 60_000_000
PURCHASE_START = S + 360 * MINUTE_US
PURCHASE_STEP_US = 25_000_000
IDENTITY_BEFORE_US = 2_000_000
CREATED_BEFORE_FRAME_US = 350_000
CID = "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di"
PARENT_CID = "bafyreiainko5un5pbcdosvxpbisjnjzemojnry6nsgtdftdgslbu37kxai"


def at(minute: float) -> int:
    return S + int(minute * MINUTE_US)


def bought_follow_time_us(n: int) -> int:
    """The frame time of the n-th bought follow (from 0)."""
    return PURCHASE_START + n * PURCHASE_STEP_US


def event_time_ms(time_us: int) -> int:
    """The event time the bridge gives a commit of that frame time: its record's createdAt."""
    return (time_us - CREATED_BEFORE_FRAME_US) // 1000


class Frames:
    """Frames, each commit with its own rev and record key; `lines()` in time order."""

    def __init__(self) -> None:
        self._frames: list[tuple[int, bytes]] = []
        self._numbers = itertools.count(1)
        self._seq = itertools.count(30340190000)

    def lines(self) -> list[bytes]:
        return [line for _, line in sorted(self._frames, key=lambda frame: frame[0])]

    def _add(self, time_us: int, frame: dict[str, object]) -> None:
        self._frames.append((time_us, orjson.dumps(frame)))

    def _commit(
        self, repo: str, time_us: int, collection: str, record: Mapping[str, object]
    ) -> str:
        number = next(self._numbers)
        rkey = f"3mmr{number:08d}"
        self._add(
            time_us,
            {
                "did": repo,
                "time_us": time_us,
                "kind": "commit",
                "commit": {
                    "rev": f"3mmrr{number:08d}",
                    "operation": "create",
                    "collection": collection,
                    "rkey": rkey,
                    "record": {
                        "$type": collection,
                        "createdAt": format_timestamp(event_time_ms(time_us)),
                        **record,
                    },
                    "cid": CID,
                },
            },
        )
        return rkey

    def post(self, author: str, time_us: int, text: str) -> str:
        """A post; returns its URI."""
        rkey = self._commit(author, time_us, "app.bsky.feed.post", {"langs": ["en"], "text": text})
        return f"at://{author}/app.bsky.feed.post/{rkey}"

    def reply(self, author: str, time_us: int, parent: str, text: str) -> None:
        ref = {"cid": PARENT_CID, "uri": parent}
        record = {"langs": ["en"], "text": text, "reply": {"parent": ref, "root": ref}}
        self._commit(author, time_us, "app.bsky.feed.post", record)

    def repost(self, author: str, time_us: int, subject: str) -> None:
        self._commit(
            author, time_us, "app.bsky.feed.repost", {"subject": {"cid": CID, "uri": subject}}
        )

    def follow(self, author: str, time_us: int, subject: str) -> None:
        self._commit(author, time_us, "app.bsky.graph.follow", {"subject": subject})

    def identity(self, account: str, time_us: int, handle: str) -> None:
        """An identity frame, as Jetstream sends for a new account: no event, but a time."""
        self._add(
            time_us,
            {
                "did": account,
                "time_us": time_us,
                "kind": "identity",
                "identity": {
                    "did": account,
                    "handle": handle,
                    "seq": next(self._seq),
                    "time": format_timestamp(event_time_ms(time_us)),
                },
            },
        )


def _organic(frames: Frames) -> None:
    p1 = frames.post(TARGET, at(0), "Repotting the fig today, wish me luck")
    frames.post(ALICE, at(5), "Long walk by the river this morning")
    frames.post(BOB, at(20), "Anyone else reading the new Le Guin collection?")
    frames.reply(ALICE, at(40), p1, "Mine lost half its leaves after repotting, it came back")
    frames.follow(ALICE, at(45), TARGET)
    frames.repost(BOB, at(65), p1)
    p2 = frames.post(TARGET, at(90), "Fig survived. Three new leaves already")
    frames.post(CAROL, at(100), "Sourdough attempt number four")
    frames.reply(BOB, at(125), p2, "Nice, what soil mix did you use?")
    frames.post(DAVE, at(150), "Train delayed again, reading on the platform")
    p3 = frames.post(TARGET, at(180), "Half bark, half compost, a little perlite")
    frames.reply(CAROL, at(190), p3, "Saving this for my monstera")
    frames.follow(CAROL, at(200), TARGET)
    frames.reply(DAVE, at(215), p3, "Perlite made all the difference for mine too")
    frames.post(ERIN, at(250), "First swim of the year, freezing")
    frames.reply(ERIN, at(300), p3, "How often do you water it?")
    p4 = frames.post(TARGET, at(301), "About once a week, less in winter")
    frames.follow(ERIN, at(330), TARGET)
    frames.reply(ALICE, at(345), p4, "Once a week works for mine as well")
    frames.reply(ALICE, at(363), p4, "And keep it away from the radiator")  # amid the purchase


def _purchase(frames: Frames, bought: int) -> None:
    for n, account in enumerate(BOUGHT[:bought]):
        follow_at = bought_follow_time_us(n)
        frames.identity(account, follow_at - IDENTITY_BEFORE_US, f"user{8311 + 7 * n}.bsky.social")
        frames.follow(account, follow_at, TARGET)


def organic_frames() -> list[bytes]:
    """The quiet account's six hours and the minutes after, without the purchase."""
    frames = Frames()
    _organic(frames)
    return frames.lines()


def purchase_frames(bought: int = len(BOUGHT)) -> list[bytes]:
    """The organic frames with the first `bought` follows of the purchase among them."""
    frames = Frames()
    _organic(frames)
    _purchase(frames, bought)
    return frames.lines()


def last_time_us(lines: list[bytes]) -> int:
    """The cursor the bridge reaches once it has read them all: the last frame's time."""
    value = orjson.loads(lines[-1])["time_us"]
    assert type(value) is int
    return value
