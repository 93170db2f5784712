"""The mapping from Jetstream frames to contract events, line by line over the fixtures: what
each frame sends or why it is skipped; then the fields, ids and times of what it sends."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from service.bridge import jetstream_mapping
from service.bridge.jetstream_mapping import (
    FollowStore,
    FrameOutcome,
    Outgoing,
    Remember,
    read_frame,
)
from service.core.decoding import EventDecoder
from service.core.models import Event
from service.core.replay import Replayer
from service.settings import DetectionSettings, InputSettings
from tests.bridge.jetstream_fixtures import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    ERIN,
    FRANK,
    T0,
    did,
    fixture_lines,
    t,
)
from tests.test_layers import imported

DEFAULT_FRAME_BYTES = 1_048_576
# The worker's decoder, its clock an hour past the fixtures (it refuses events from the future).
DECODER = EventDecoder(InputSettings(), lambda: T0 // 1000 + 3_600_000)


@dataclass(frozen=True)
class Sent:
    type: str
    actor: str
    target: str | None = None


def sent(*events: Sent) -> tuple[Sent, ...]:
    return events


def mentions(actor: str, *targets: str) -> tuple[Sent, ...]:
    return tuple(Sent("mention", actor, target) for target in targets)


# name, follow store capacity, frame limit, and per line: the events sent or the skip reason.
TABLE = [
    ("follows.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        sent(Sent("follow", ALICE, BOB)),
        sent(Sent("unfollow", ALICE, BOB)),  # the delete names only the rkey
        "unknown_follow",  # the same delete again: forgotten at the unfollow
        "unknown_follow",  # a delete of an rkey never seen
        "not_mapped",  # an update
        sent(Sent("follow", ALICE, ALICE)),  # self-targeted: valid, the worker counts it
        "invalid_did",  # subject is a handle
        "missing_field",  # no subject
        sent(Sent("follow", DAVE, BOB)),  # the same rkey in another repo
        sent(Sent("unfollow", DAVE, BOB)),
    ]),
    ("follows_evicted.jsonl", 2, DEFAULT_FRAME_BYTES, [
        sent(Sent("follow", ALICE, BOB)),
        sent(Sent("follow", ALICE, CAROL)),
        sent(Sent("follow", ALICE, DAVE)),  # a third in a store of two: bob's is forgotten
        "unknown_follow",
        sent(Sent("unfollow", ALICE, DAVE)),
        sent(Sent("unfollow", ALICE, CAROL)),
    ]),
    ("reposts.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        sent(Sent("retweet", BOB, CAROL)),  # the author from the subject's at:// URI
        sent(Sent("retweet", CAROL, CAROL)),  # her own post
        "not_mapped",  # an un-repost
        "not_mapped",  # an update
        "invalid_uri",  # https://, not at://
        "invalid_did",  # at://handle/...
        "missing_field",
    ]),
    ("posts.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        sent(Sent("post", DAVE)),
        sent(Sent("post", DAVE)),  # a link facet is no mention
        "not_mapped",  # a deleted post
        "not_mapped",  # an edited one
        "missing_field",  # no text
        "text_too_long",  # 10,001 characters
        sent(Sent("post", DAVE)),  # 10,000: the contract's limit
        sent(Sent("post", DAVE)),  # a record key too long for post_id: sent without it
    ]),
    ("replies.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        sent(Sent("reply", ERIN, BOB)),  # to a post never seen: the URI names its author
        sent(Sent("reply", ERIN, ERIN)),  # in her own thread
        sent(Sent("reply", ERIN, BOB)),  # also @-mentions bob: one message to one account
        sent(Sent("reply", ERIN, BOB), Sent("mention", ERIN, FRANK)),
        "missing_field",  # a reply ref without its parent
    ]),
    ("mentions.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        sent(Sent("mention", FRANK, CAROL)),
        # three accounts, carol twice: one event each, in order
        mentions(FRANK, BOB, CAROL, DAVE),
        sent(Sent("mention", FRANK, FRANK)),  # a self-mention: valid, self-targeted
        "invalid_did",
        "invalid_field",  # facets not a list
    ]),
    ("identity_and_account.jsonl", 1000, DEFAULT_FRAME_BYTES, ["identity", "account", "account"]),
    ("garbage.jsonl", 1000, DEFAULT_FRAME_BYTES, [
        "invalid_json",  # not JSON
        "invalid_json",  # cut short
        "invalid_json",  # not UTF-8
        "not_an_object",  # an array
        "not_an_object",  # a string
        "not_an_object",  # null
        "unknown_kind",  # {}
        "unknown_kind",  # kind "labels"
        "missing_field",  # no time_us
        "invalid_field",  # time_us a string
        "invalid_field",  # time_us 12345: not a time (and Jetstream would take it for a seq)
        "invalid_field",  # time_us true
        "missing_field",  # no did
        "invalid_did",  # "alice"
        "invalid_did",  # 129 characters: over the contract's 128
        "invalid_field",  # did 42
        "missing_field",  # no commit
        "invalid_field",  # commit a string
        "invalid_field",  # operation "upsert"
        "unknown_collection",  # a like: a server that ignored wantedCollections
        "invalid_field",  # collection a list
        "invalid_field",  # rkey "../etc"
        "invalid_field",  # rkey ".."
        "missing_field",  # no rkey
        "invalid_field",  # record a list
        "missing_field",  # a create without its record
        "invalid_field",  # subject an object
    ]),
    ("stream.jsonl", 1000, 1024, [
        "identity",
        "account",
        sent(Sent("follow", ALICE, BOB)),
        "invalid_json",
        sent(Sent("follow", CAROL, BOB)),
        "not_an_object",
        "unknown_kind",
        "unknown_collection",
        "invalid_did",
        "unknown_follow",
        "not_mapped",
        "oversized",  # 1,867 bytes, over a limit of 1,024
        sent(Sent("unfollow", ALICE, BOB)),
        sent(Sent("retweet", DAVE, BOB)),
        mentions(FRANK, ALICE, BOB, CAROL),
        sent(Sent("reply", ERIN, CAROL)),
        sent(Sent("follow", ALICE, DAVE)),
        sent(Sent("reply", BOB, ALICE)),
        sent(Sent("follow", BOB, ALICE)),
        sent(Sent("unfollow", ALICE, DAVE)),
        sent(Sent("mention", CAROL, CAROL)),
        sent(Sent("post", DAVE)),
        "invalid_json",
        "account",
    ]),
]  # fmt: skip


def read_all(
    name: str, capacity: int = 1000, max_frame_bytes: int = DEFAULT_FRAME_BYTES
) -> list[FrameOutcome]:
    store = FollowStore(capacity)
    outcomes = []
    for raw in fixture_lines(name):
        outcome = read_frame(raw, store, max_frame_bytes)
        store.apply(outcome.follow_change)
        outcomes.append(outcome)
    return outcomes


def summary(outcome: FrameOutcome) -> str | tuple[Sent, ...]:
    assert not (outcome.skipped and outcome.events), outcome
    if outcome.skipped is not None:
        return outcome.skipped
    return tuple(
        Sent(e.type, e.event["actor_id"], e.event.get("target_id")) for e in outcome.events
    )


@pytest.mark.parametrize(
    ("name", "capacity", "max_frame_bytes", "expected"), TABLE, ids=[case[0] for case in TABLE]
)
def test_each_frame_sends_what_the_table_says_or_is_skipped_for_its_reason(
    name: str, capacity: int, max_frame_bytes: int, expected: list[str | tuple[Sent, ...]]
) -> None:
    outcomes = read_all(name, capacity, max_frame_bytes)
    assert [summary(outcome) for outcome in outcomes] == expected
    for outcome in outcomes:
        assert outcome.skipped is None or outcome.skipped in jetstream_mapping.SKIP_REASONS
        for event in outcome.events:
            assert_passes_the_decoder(event)


def assert_passes_the_decoder(sent_event: Outgoing) -> None:
    decoded = DECODER.decode(sent_event.value)
    assert isinstance(decoded, Event), (decoded, sent_event.event)
    assert decoded.event_id == sent_event.event["event_id"]
    assert decoded.actor_id == sent_event.event["actor_id"] == sent_event.key.decode()
    assert decoded.target_id == sent_event.event.get("target_id")
    assert len(sent_event.value) <= InputSettings().max_message_bytes


def test_frame_kinds_are_jetstreams_three_and_unknown_for_the_rest() -> None:
    kinds = Counter(outcome.kind for outcome in read_all("stream.jsonl", max_frame_bytes=1024))
    assert kinds == {"commit": 16, "identity": 1, "account": 2, "unknown": 5}


def test_the_fields_of_each_event_type() -> None:
    follow = read_all("follows.jsonl")[0].events[0].event
    follow_id = hashlib.blake2b(
        f"at://{ALICE}/app.bsky.graph.follow/3mmoojf0001a#create".encode(), digest_size=16
    ).hexdigest()
    assert follow == {
        "event_id": f"bsky:{follow_id}",
        "type": "follow",
        "actor_id": ALICE,
        "target_id": BOB,
        "occurred_at": "2026-05-25T14:23:19.650Z",  # the record's createdAt
    }
    unfollow = read_all("follows.jsonl")[1].events[0].event
    assert unfollow["occurred_at"] == "2026-05-25T14:23:21.000Z"  # no record: the frame's time
    assert "text" not in unfollow and "post_id" not in unfollow

    retweet = read_all("reposts.jsonl")[0].events[0].event
    assert retweet["post_id"] == f"at://{CAROL}/app.bsky.feed.post/3mmoojp0001c"
    assert "text" not in retweet

    reply, mention = read_all("replies.jsonl")[3].events
    assert reply.event["post_id"] == f"at://{BOB}/app.bsky.feed.post/3mmojbrjwbs26"  # the parent
    assert mention.event["post_id"] == f"at://{ERIN}/app.bsky.feed.post/3mmoojp0004e"  # its own
    assert reply.event["text"] == mention.event["text"] == "@frank look at this"

    post = read_all("posts.jsonl")[0].events[0].event
    assert post["post_id"] == f"at://{DAVE}/app.bsky.feed.post/3mmoojp0001d"
    assert post["text"] == "Morning! Coffee first, then the garden."
    assert "target_id" not in post

    long_key = read_all("posts.jsonl")[7].events[0].event
    assert "post_id" not in long_key  # optional, and its URI is over 128 characters


def test_a_post_mentioning_several_accounts_is_one_send() -> None:
    events = [e.event for e in read_all("mentions.jsonl")[1].events]
    assert len(events) == 3
    assert len({e["event_id"] for e in events}) == 3
    assert {(e["actor_id"], e["text"], e["occurred_at"]) for e in events} == {
        (
            FRANK,
            "Dinner tonight @bob @carol @dave? @carol bring the cake",
            "2026-05-25T14:23:20.650Z",
        )
    }


def spam_posts(count: int) -> list[Event]:
    """`count` posts two minutes apart (no createdAt: at their frames' times), each the same
    pitch mentioning three new accounts."""
    events = []
    store = FollowStore(10)
    for number in range(count):
        mentions = [did(f"target{number}x{k}") for k in range(3)]
        frame = {
            "did": FRANK,
            "time_us": t(120 * number),
            "kind": "commit",
            "commit": {
                "operation": "create",
                "collection": "app.bsky.feed.post",
                "rkey": f"3mmoojs{number:04d}f",
                "record": {
                    "text": "Grow your audience fast, best prices on real followers!",
                    "facets": [
                        {"features": [{"$type": jetstream_mapping.MENTION, "did": target}]}
                        for target in mentions
                    ],
                },
            },
        }
        for sent_event in read_frame(orjson.dumps(frame), store, DEFAULT_FRAME_BYTES).events:
            decoded = DECODER.decode(sent_event.value)
            assert isinstance(decoded, Event)
            events.append(decoded)
    return events


@pytest.mark.parametrize(("posts", "alerts"), [(4, 0), (5, 1)])
def test_duplicate_reply_spam_counts_posts_not_their_mentions(posts: int, alerts: int) -> None:
    # Four posts reach 12 accounts in 12 events: were each mention a send, that is spam (the
    # default is 5 sends to 5 accounts). It takes a fifth post.
    replayer = Replayer(DetectionSettings(), lambda: T0 // 1000 + 3_600_000)
    found = []
    for event in spam_posts(posts):
        found += replayer.submit(event)
    found += replayer.flush()
    assert [alert.rule for alert in found] == ["duplicate_reply_spam"] * alerts


@pytest.mark.parametrize(
    ("line", "occurred_at"),
    [
        (0, "2026-05-25T14:23:19.650Z"),  # createdAt, 350 ms before the frame
        (1, "2026-05-25T14:23:21.000Z"),  # createdAt a year back: the frame's time
        (2, "2026-05-25T14:18:23.000Z"),  # 299 s back: within the worker's largest lateness
        (3, "2026-05-25T14:23:23.000Z"),  # 10 min ahead: the frame's time
        (4, "2026-05-25T14:24:23.000Z"),  # 59 s ahead: a clock a little fast
        (5, "2026-05-25T14:23:25.000Z"),  # "yesterday"
        (6, "2026-05-25T14:23:26.000Z"),  # no offset
        (7, "2026-05-25T14:23:27.000Z"),  # no createdAt
    ],
)
def test_occurred_at_is_the_records_created_at_when_sane_else_the_frames_time(
    line: int, occurred_at: str
) -> None:
    (event,) = read_all("times.jsonl")[line].events
    assert event.event["occurred_at"] == occurred_at


@pytest.mark.parametrize("name", [case[0] for case in TABLE])
def test_event_ids_are_the_same_on_every_reading_and_distinct_within_one(name: str) -> None:
    first = [e.event["event_id"] for o in read_all(name, 2, 1024) for e in o.events]
    again = [e.event["event_id"] for o in read_all(name, 2, 1024) for e in o.events]
    assert first == again
    assert len(set(first)) == len(first)
    assert all(i.startswith("bsky:") and len(i) <= 128 for i in first)


def test_a_follows_delete_and_its_create_have_different_ids() -> None:
    follow, unfollow = (o.events[0].event["event_id"] for o in read_all("follows.jsonl")[:2])
    assert follow != unfollow


def test_a_follow_is_remembered_under_its_repo_and_rkey() -> None:
    outcome = read_all("follows.jsonl")[0]
    assert outcome.follow_change == Remember(f"{ALICE}/3mmoojf0001a", BOB)


def test_the_follow_store_keeps_its_bound_and_forgets_the_oldest_first() -> None:
    store = FollowStore(3)
    for number in range(10):
        store.apply(Remember(f"k{number}", f"s{number}"))
        assert len(store) <= 3
    assert [store.subject(f"k{n}") for n in (6, 7, 8, 9)] == [None, "s7", "s8", "s9"]


def test_every_frame_time_that_is_a_time_moves_the_cursor() -> None:
    outcomes = read_all("stream.jsonl", max_frame_bytes=1024)
    timed = [index for index, outcome in enumerate(outcomes) if outcome.time_us is not None]
    assert [outcomes[i].time_us for i in timed] == [t(i) for i in timed]
    assert set(range(24)) - set(timed) == {3, 5, 11, 22}  # garbage and the oversized frame


def test_the_mapping_is_pure() -> None:
    names = imported(Path(jetstream_mapping.__file__))
    io = {"aiohttp", "aiokafka", "prometheus_client", "asyncio", "socket", "os", "time"}
    assert not {name.split(".")[0] for name in names} & io
    assert not {n for n in names if n.startswith("service.") and not n.startswith("service.core")}
