"""The synthetic traffic generator: determinism, validity, and the shape of every scenario.

Scenario checks read the generated stream the way a detector would (event time, distinct
accounts, relationships seen earlier in the stream), so a generator change that quietly
weakens an attack or a near-miss fails here rather than in the benchmark.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from random import Random

import orjson
import pytest

from service.core.models import Event, parse_timestamp_ms
from service.devtools.generate import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    RULES,
    ExpectedAlert,
    Traffic,
    finalize_events,
    follow_churn,
    follower_purchase,
    generate_traffic,
    retweet_request_campaign,
    write_jsonl,
)

ROOT = Path(__file__).resolve().parents[2]
SEED = 11
# Fewer organic events than the default keeps the suite fast; scenarios are unchanged.
ORGANIC = 8_000
SPIKE_WINDOW_MS = 10 * MINUTE_MS
Row = dict[str, object]


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate_traffic(SEED, organic_events=ORGANIC)


def _ms(event: Row) -> int:
    return parse_timestamp_ms(event["occurred_at"])


def _subjects(traffic: Traffic, rule: str, *, alert: bool) -> list[ExpectedAlert]:
    found = [x for x in traffic.expected if x.rule == rule and x.alert is alert]
    assert found, f"no {'positive' if alert else 'near-miss'} for {rule}"
    return found


def _peak(times: list[int], window_ms: int) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, at in enumerate(times):
        while times[left] <= at - window_ms:
            left += 1
        best = max(best, right - left + 1)
    return best


def _jsonl(traffic: Traffic) -> bytes:
    buffer = io.BytesIO()
    write_jsonl(traffic.events, buffer)
    return buffer.getvalue()


# The contract's normalization for duplicate texts: case, whitespace, URLs and @-mentions.
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<!\w)@\w+")


def _normalized(text: str) -> str:
    text = _MENTION.sub(" ", _URL.sub(" <url> ", text.casefold()))
    return " ".join(text.split())


# ------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_bytes(traffic: Traffic) -> None:
    again = generate_traffic(SEED, organic_events=ORGANIC)
    assert _jsonl(again) == _jsonl(traffic)
    assert again.expected == traffic.expected


def test_output_does_not_depend_on_hash_randomization() -> None:
    # Iterating a set would make output depend on PYTHONHASHSEED: compare two processes.
    code = (
        "import hashlib, io, sys\n"
        "from service.devtools.generate import generate_traffic, write_jsonl\n"
        "buf = io.BytesIO()\n"
        "write_jsonl(generate_traffic(3, users=500, organic_events=1500).events, buf)\n"
        "sys.stdout.write(hashlib.sha256(buf.getvalue()).hexdigest())\n"
    )
    digests: set[bytes] = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
        )
        digests.add(done.stdout)
    local = io.BytesIO()
    write_jsonl(generate_traffic(3, users=500, organic_events=1500).events, local)
    digests.add(hashlib.sha256(local.getvalue()).hexdigest().encode())
    assert len(digests) == 1


def test_different_seeds_differ(traffic: Traffic) -> None:
    other = generate_traffic(SEED + 1, organic_events=ORGANIC)
    assert _jsonl(other) != _jsonl(traffic)


# ------------------------------------------------------------------------------- validity


def test_every_event_validates_against_the_contract(traffic: Traffic) -> None:
    ids: set[str] = set()
    for row in traffic.events:
        event = Event.model_validate_json(orjson.dumps(row))
        assert event.occurred_at == _ms(row)
        ids.add(event.event_id)
    assert len(ids) == len(traffic.events)


def test_events_sorted_by_time_then_id(traffic: Traffic) -> None:
    keys = [(_ms(row), str(row["event_id"])) for row in traffic.events]
    assert keys == sorted(keys)


def test_both_timestamp_forms_and_snapshots_appear(traffic: Traffic) -> None:
    ints = sum(isinstance(row["occurred_at"], int) for row in traffic.events)
    assert 0.15 < ints / len(traffic.events) < 0.25
    for row in traffic.events:
        if isinstance(row["occurred_at"], str):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["occurred_at"])
    organic = [row for row in traffic.events if str(row["actor_id"]).startswith("u")]
    with_snapshot = sum("actor" in row for row in organic)
    assert 0.75 < with_snapshot / len(organic) < 0.95


def test_default_size_and_span() -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    small = generate_traffic(5, organic_events=2_000, hours=24.0, start=start)
    first, last = _ms(small.events[0]), _ms(small.events[-1])
    start_ms = int(start.timestamp() * 1000)
    assert start_ms <= first and last < start_ms + 25 * HOUR_MS
    assert len(small.events) > 2_000


def test_write_jsonl_writes_one_object_per_line(traffic: Traffic) -> None:
    buffer = io.BytesIO()
    assert write_jsonl(traffic.events[:50], buffer) == 50
    lines = buffer.getvalue().splitlines()
    assert [orjson.loads(line) for line in lines] == traffic.events[:50]


def test_expected_lists_every_rule_as_positive_and_has_near_misses(traffic: Traffic) -> None:
    positives = {x.rule for x in traffic.expected if x.alert}
    assert positives == set(RULES)
    near = [x for x in traffic.expected if not x.alert]
    assert {x.rule for x in near} == set(RULES)
    assert all(x.min_severity in ("low", "medium", "high") for x in traffic.expected if x.alert)
    assert all(x.min_severity is None for x in near)
    assert orjson.loads(orjson.dumps(near[0].to_json()))["alert"] is False


# ---------------------------------------------------------------- retweet-request scenarios


def _engaged_or_followed_before(events: list[Row], giver: str, receiver: str, at: int) -> bool:
    return any(
        row["actor_id"] == giver
        and row.get("target_id") == receiver
        and row["type"] in ("follow", "retweet", "reply", "mention")
        and _ms(row) < at
        for row in events
    )


def test_campaign_recipients_are_strangers_and_severities_match(traffic: Traffic) -> None:
    severities: dict[int, str | None] = {}
    for expected in _subjects(traffic, "unsolicited_retweet_request", alert=True):
        requests = [
            row
            for row in traffic.events
            if row["actor_id"] == expected.subject_id and row["type"] in ("reply", "mention")
        ]
        first = min(_ms(row) for row in requests)
        recipients = {str(row["target_id"]) for row in requests}
        for recipient in recipients:
            assert not _engaged_or_followed_before(
                traffic.events, recipient, expected.subject_id, first
            )
        assert len({_normalized(str(row["text"])) for row in requests}) == len(requests)
        assert max(_ms(row) for row in requests) - first < HOUR_MS
        severities[len(recipients)] = expected.min_severity
    assert severities == {12: "high", 4: "medium", 1: "low"}


def test_friend_requests_go_to_acquaintances(traffic: Traffic) -> None:
    near = [
        x
        for x in _subjects(traffic, "unsolicited_retweet_request", alert=False)
        if x.scenario == "friend_retweet_request"
    ]
    kinds: set[str] = set()
    for expected in near:
        (request,) = [
            row
            for row in traffic.events
            if row["actor_id"] == expected.subject_id and row["type"] == "mention"
        ]
        friend = str(request["target_id"])
        earlier = [
            row
            for row in traffic.events
            if row["actor_id"] == friend
            and row.get("target_id") == expected.subject_id
            and _ms(row) < _ms(request)
        ]
        assert earlier
        kinds.update(str(row["type"]) for row in earlier)
    assert {"follow", "retweet"} <= kinds


def test_non_requests_mention_retweets_without_asking(traffic: Traffic) -> None:
    (near,) = [x for x in traffic.expected if x.scenario == "non_request_mentions"]
    texts = [str(row["text"]) for row in traffic.events if row["actor_id"] == near.subject_id]
    assert len(texts) == 3 and all(re.search(r"\bRT\b|retweet", t) for t in texts)


# ------------------------------------------------------------------ follower-spike scenarios


def _follows_to(traffic: Traffic, subject: str) -> list[Row]:
    return [r for r in traffic.events if r["type"] == "follow" and r["target_id"] == subject]


def test_purchase_lands_150_fresh_fakes_within_10_minutes(traffic: Traffic) -> None:
    (expected,) = [x for x in traffic.expected if x.scenario == "follower_purchase"]
    follows = _follows_to(traffic, expected.subject_id)
    fakes = [row for row in follows if str(row["actor_id"]).startswith("fake-")]
    assert len(fakes) == 150
    assert _peak([_ms(row) for row in fakes], SPIKE_WINDOW_MS) >= 150
    attack = min(_ms(row) for row in fakes)
    for row in fakes:
        snap = row["actor"]
        assert isinstance(snap, dict)
        assert attack - parse_timestamp_ms(snap["created_at"]) <= 10 * DAY_MS
        assert snap["posts_count"] == 0
        assert snap["following_count"] >= 10 * max(1, snap["followers_count"])
    # An ordinary gain before the purchase gives the account a baseline.
    assert sum(_ms(row) < attack - SPIKE_WINDOW_MS for row in follows) >= 10
    assert len({row["actor_id"] for row in follows}) == len(follows)


def test_bump_is_45_established_followers_within_10_minutes(traffic: Traffic) -> None:
    (near,) = [x for x in traffic.expected if x.scenario == "organic_follower_bump"]
    follows = _follows_to(traffic, near.subject_id)
    assert _peak([_ms(row) for row in follows], SPIKE_WINDOW_MS) >= 45
    assert len({row["actor_id"] for row in follows}) == len(follows)
    for row in follows:
        assert str(row["actor_id"]).startswith("u")
        snap = row.get("actor")
        if isinstance(snap, dict):
            assert _ms(row) - parse_timestamp_ms(snap["created_at"]) > 365 * DAY_MS
            assert snap["posts_count"] > 0
            assert snap["following_count"] <= 3 * snap["followers_count"] + 100


def test_organic_follower_gain_stays_far_below_the_spike_floor(traffic: Traffic) -> None:
    spiking = {x.subject_id for x in traffic.expected if x.rule == "follower_spike"}
    spiking -= {x.subject_id for x in traffic.expected if x.scenario == "popular_steady_gain"}
    by_target: dict[str, list[int]] = defaultdict(list)
    for row in traffic.events:
        if row["type"] == "follow" and row["target_id"] not in spiking:
            by_target[str(row["target_id"])].append(_ms(row))
    assert max(_peak(times, SPIKE_WINDOW_MS) for times in by_target.values()) < 20


def test_full_size_organic_gain_stays_below_the_floor() -> None:
    # The default volume concentrates follows on popular accounts the most.
    full = generate_traffic(2)
    (popular,) = [x for x in full.expected if x.scenario == "popular_steady_gain"]
    times = [_ms(row) for row in _follows_to(full, popular.subject_id)]
    assert len(times) > 100  # steady gain all day...
    assert _peak(times, SPIKE_WINDOW_MS) < 20  # ...never a spike


# ------------------------------------------------------------------------ churn scenarios


def _churned_pairs(traffic: Traffic, actor: str) -> tuple[int, int, list[Row]]:
    followed: dict[str, int] = {}
    churned = 0
    for row in traffic.events:
        if row["actor_id"] != actor:
            continue
        if row["type"] == "follow":
            followed[str(row["target_id"])] = _ms(row)
        elif row["type"] == "unfollow":
            since = followed.get(str(row["target_id"]))
            if since is not None and _ms(row) - since <= DAY_MS:
                churned += 1
    backs = [row for row in traffic.events if row["type"] == "follow" and row["target_id"] == actor]
    return churned, len(followed), backs


def test_churner_unfollows_most_follows_within_a_day(traffic: Traffic) -> None:
    (expected,) = _subjects(traffic, "follow_churn", alert=True)
    churned, follows, backs = _churned_pairs(traffic, expected.subject_id)
    assert follows == 80 and churned >= 50
    assert len(backs) <= 5
    for back in backs:
        own = [
            row
            for row in traffic.events
            if row["actor_id"] == expected.subject_id and row["target_id"] == back["actor_id"]
        ]
        assert _ms(own[0]) < _ms(back)  # follow-back after the churner's follow


def test_selective_unfollows_stay_few(traffic: Traffic) -> None:
    (near,) = _subjects(traffic, "follow_churn", alert=False)
    churned, follows, _ = _churned_pairs(traffic, near.subject_id)
    assert follows == 12 and churned == 5


# -------------------------------------------------------------------- duplicate texts


def _texts_to_targets(traffic: Traffic) -> dict[tuple[str, str], list[tuple[int, str]]]:
    sent: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for row in traffic.events:
        if row["type"] in ("reply", "mention") and isinstance(row.get("text"), str):
            key = (str(row["actor_id"]), _normalized(str(row["text"])))
            sent[key].append((_ms(row), str(row["target_id"])))
    return sent


def _max_targets_per_hour(sends: list[tuple[int, str]]) -> int:
    sends = sorted(sends)
    return max(
        len({target for at, target in sends if start <= at < start + HOUR_MS}) for start, _ in sends
    )


def test_duplicate_spam_reaches_8_targets_and_nothing_else_repeats(traffic: Traffic) -> None:
    (expected,) = _subjects(traffic, "duplicate_reply_spam", alert=True)
    sent = _texts_to_targets(traffic)
    spam = [v for (actor, _), v in sent.items() if actor == expected.subject_id]
    assert len(spam) == 1 and _max_targets_per_hour(spam[0]) == 8
    raw = {str(row["text"]) for row in traffic.events if row["actor_id"] == expected.subject_id}
    assert len(raw) == 8  # varied before normalization
    repeated = {
        actor
        for (actor, text), sends in sent.items()
        if len(text) >= 16 and _max_targets_per_hour(sends) >= 5
    }
    assert repeated == {expected.subject_id}


def test_thank_you_replies_repeat_to_two(traffic: Traffic) -> None:
    (near,) = _subjects(traffic, "duplicate_reply_spam", alert=False)
    sends = [v for (actor, _), v in _texts_to_targets(traffic).items() if actor == near.subject_id]
    assert [len(v) for v in sends] == [2]


def test_organic_texts_never_ask_for_a_share(traffic: Traffic) -> None:
    share = re.compile(r"\b(?:rt|retweet\w*|share\w*|repost\w*|boost\w*|spread|amplify)\b", re.I)
    organic = [
        str(row["text"])
        for row in traffic.events
        if str(row["actor_id"]).startswith("u") and "text" in row
    ]
    assert len(organic) > 1000
    assert not [text for text in organic if share.search(text)]


# ------------------------------------------------------------- reusable scenario functions


@pytest.mark.parametrize(("strangers", "severity"), [(1, "low"), (3, "medium"), (10, "high")])
def test_campaign_severity_follows_distinct_strangers(strangers: int, severity: str) -> None:
    injection = retweet_request_campaign(
        Random(1), "spam-x", [f"s{i}" for i in range(strangers)], 1_000_000
    )
    assert [x.min_severity for x in injection.expected] == [severity]


def test_purchase_variants() -> None:
    slow = follower_purchase(Random(1), "b", 10 * DAY_MS, followers=50, span_ms=DAY_MS)
    assert slow.expected == []  # a drip under the spike floor promises nothing either way
    flood = follower_purchase(
        Random(1),
        "b",
        10 * DAY_MS,
        followers=1000,
        span_ms=10 * MINUTE_MS,
        fake_accounts="dormant",
        fake_prefix="bot-",
        camouflage_targets=[f"c{i}" for i in range(300)],
        camouflage_per_fake=3,
    )
    assert [x.min_severity for x in flood.expected] == ["high"]
    snaps = [e["actor"] for e in flood.events if e["target_id"] == "b"]
    assert all(isinstance(s, dict) and s["posts_count"] == 0 for s in snaps)
    assert sum(e["target_id"] != "b" for e in flood.events) == 3000


def test_churn_variants_and_finalize() -> None:
    targets = [f"t{i}" for i in range(250)]
    heavy = follow_churn(Random(2), "c", targets, 0, unfollows=220, follow_backs=10)
    assert [x.min_severity for x in heavy.expected] == ["high"]
    pruning = follow_churn(Random(2), "c", targets[:60], 0, unfollows=55, follow_backs=40)
    assert pruning.expected == []  # most targets followed back: pruning, not farming
    rows = finalize_events(heavy.events, id_prefix="inj-", rng=Random(0))
    assert rows[0]["event_id"] == "inj-0000001"
    assert [_ms(r) for r in rows] == sorted(_ms(r) for r in rows)


def test_a_pool_of_real_looking_accounts_follows_three_customers_in_lockstep(
    traffic: Traffic,
) -> None:
    customers = [x.subject_id for x in traffic.expected if x.scenario == "follower_pool_purchase"]
    assert len(customers) == 3
    by_fake: dict[str, list[Row]] = {}
    for row in traffic.events:
        if str(row["actor_id"]).startswith("pool-fake-"):
            by_fake.setdefault(str(row["actor_id"]), []).append(row)
    assert len(by_fake) == 60
    for follows in by_fake.values():
        assert sorted(str(row["target_id"]) for row in follows) == sorted(customers)
        # each fake serves its customers within minutes of each other
        times = [_ms(row) for row in follows]
        assert max(times) - min(times) <= 6 * 60_000
        snap = follows[0]["actor"]
        assert isinstance(snap, dict)
        assert snap["posts_count"] > 0  # camouflaged: nothing in the profile gives it away
        assert snap["following_count"] < 10 * max(1, snap["followers_count"])
