"""Properties of the whole pipeline: at-least-once delivery and bounded disorder change
nothing, and state survives a serialization round trip (a changelog restore)."""

from __future__ import annotations

import random

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.core.models import Alert, Event
from service.core.replay import Replayer
from service.core.state import ActorState, TargetState
from service.settings import (
    DetectionSettings,
    DuplicateReplySettings,
    FollowChurnSettings,
    FollowerSpikeSettings,
    RetweetRequestSettings,
)
from tests.events import FIXED_NOW, FRESH, T0

# Low thresholds so that small random streams trigger every rule now and then.
EAGER = DetectionSettings(
    unsolicited_retweet_request=RetweetRequestSettings(
        medium_distinct_strangers=2, high_distinct_strangers=3
    ),
    follower_spike=FollowerSpikeSettings(min_follows=3, min_low_quality_share=0.3),
    follow_churn=FollowChurnSettings(min_churned_pairs=2),
    duplicate_reply_spam=DuplicateReplySettings(min_distinct_targets=2, min_text_chars=0),
)
LATENESS_MS = EAGER.state.allowed_lateness_seconds * 1000
ACCOUNTS = ["a", "b", "c", "d", "e"]
TEXTS = ["please RT my post", "buy cheap followers now", "nice one", "RT @x: news", None]
KINDS = ["follow", "follow", "unfollow", "retweet", "reply", "mention", "post"]


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    count = draw(st.integers(min_value=1, max_value=60))
    events = []
    for n in range(count):
        kind = draw(st.sampled_from(KINDS))
        actor = draw(st.sampled_from(ACCOUNTS))
        fields: dict[str, object] = {
            "event_id": f"p{n}",
            "type": kind,
            "actor_id": actor,
            # Seconds apart, within three hours: windows, episodes and lateness all matter.
            "occurred_at": T0 + draw(st.integers(min_value=0, max_value=3 * 3600)) * 1000,
        }
        if kind != "post":
            fields["target_id"] = draw(st.sampled_from(ACCOUNTS))
        if kind in ("reply", "mention", "post"):
            text = draw(st.sampled_from(TEXTS))
            if text is not None:
                fields["text"] = text
        if draw(st.booleans()):
            fields["actor"] = FRESH
        events.append(Event.model_validate(fields))
    return sorted(events, key=lambda e: (e.occurred_at, e.event_id))


def run(events: list[Event]) -> tuple[list[dict[str, object]], Replayer]:
    replayer = Replayer(EAGER, lambda: FIXED_NOW)
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    return [a.model_dump(mode="json") for a in alerts], replayer


def profiles(replayer: Replayer) -> dict[str, object]:
    return {account: replayer.profile(account) for account in ACCOUNTS}


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(streams(), st.randoms(use_true_random=False))
def test_redelivery_changes_nothing(events: list[Event], rnd: random.Random) -> None:
    expected, clean = run(events)
    # Every event delivered twice, the copy anywhere later in the stream.
    redelivered = list(events)
    for event in events:
        position = redelivered.index(event) + 1
        redelivered.insert(rnd.randint(position, len(redelivered)), event)
    actual, noisy = run(redelivered)
    assert actual == expected
    assert profiles(noisy) == profiles(clean)


@PROPERTY
@given(streams(), st.randoms(use_true_random=False))
def test_disorder_within_lateness_bound_changes_nothing(
    events: list[Event], rnd: random.Random
) -> None:
    expected, clean = run(events)
    # Arrival order = event time + a delay below the lateness bound.
    shuffled = sorted(events, key=lambda e: e.occurred_at + rnd.randrange(LATENESS_MS))
    actual, disordered = run(shuffled)
    assert actual == expected
    assert profiles(disordered) == profiles(clean)


@PROPERTY
@given(streams(), st.integers(min_value=0, max_value=60))
def test_state_restored_from_its_serialized_form_continues_identically(
    events: list[Event], cut: int
) -> None:
    expected, _ = run(events)
    cut = min(cut, len(events))
    replayer = Replayer(EAGER, lambda: FIXED_NOW)
    alerts: list[Alert] = []
    for event in events[:cut]:
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    # What a changelog restore does: every value through bytes and back.
    tables = replayer.tables
    for key, actor in list(tables.actors.items()):
        tables.actors[key] = ActorState.from_value(orjson.loads(orjson.dumps(actor.to_value())))
    for key, target in list(tables.targets.items()):
        tables.targets[key] = TargetState.from_value(orjson.loads(orjson.dumps(target.to_value())))
    for key, relation in list(tables.relations.items()):
        tables.relations[key] = orjson.loads(orjson.dumps(relation))
    for event in events[cut:]:
        alerts.extend(replayer.submit(event))
    alerts.extend(replayer.flush())
    assert [a.model_dump(mode="json") for a in alerts] == expected
