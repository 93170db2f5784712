"""Crash consistency between tables: an account's state and its relation rows are separate
writes, and a crash can keep one without the other. Re-delivery must repair, not drift."""

from __future__ import annotations

import copy

from service.core.pipeline import Outcome, Pipeline
from service.core.state import FOLLOWED_BACK, FOLLOWS, MemoryTables, relation_key
from service.settings import DetectionSettings
from tests.events import FIXED_NOW, ev


def pipeline() -> Pipeline:
    return Pipeline(DetectionSettings(), MemoryTables.empty(), lambda: FIXED_NOW)


def test_replayed_unfollow_with_lost_actor_state_still_counts_the_churned_pair() -> None:
    p = pipeline()
    follow, unfollow = ev("follow", "a", "b", 0), ev("unfollow", "a", "b", 30)
    p.actor_stage(follow)
    before = copy.deepcopy(p.tables.actors["a"])
    p.actor_stage(unfollow)
    churned = p.tables.actors["a"].churn
    # Crash: the relation row (now unfollowed) was saved, the actor's state was not.
    p.tables.actors["a"] = before
    assert p.actor_stage(unfollow).outcome is Outcome.PROCESSED
    assert p.tables.actors["a"].churn == churned


def test_duplicate_with_lost_relation_row_restores_the_relation() -> None:
    p = pipeline()
    follow = ev("follow", "a", "b", 0)
    p.actor_stage(follow)
    # Crash: the actor's state (with the event id) was saved, the relation row was not.
    del p.tables.relations[relation_key("a", "b")]
    result = p.actor_stage(follow)
    assert result.outcome is Outcome.DUPLICATE
    assert result.forward is not None
    assert p.tables.relations[relation_key("a", "b")][0] & FOLLOWS


def test_replayed_follow_with_lost_actor_state_counts_the_follow_again() -> None:
    p = pipeline()
    follow = ev("follow", "a", "b", 0)
    p.actor_stage(follow)
    counted = copy.deepcopy(p.tables.actors["a"].churn)
    del p.tables.actors["a"]
    p.actor_stage(follow)
    assert p.tables.actors["a"].churn == counted


def test_late_copy_of_a_follow_does_not_undo_the_unfollow_that_came_after_it() -> None:
    # arrivals: follow a→b, unfollow a→b, then the follow again (re-delivered)
    p = pipeline()
    follow, unfollow = ev("follow", "a", "b", 0), ev("unfollow", "a", "b", 1)
    p.actor_stage(follow)
    p.actor_stage(unfollow)
    unfollowed = list(p.tables.relations[relation_key("a", "b")])
    assert p.actor_stage(follow).outcome is Outcome.DUPLICATE
    assert p.tables.relations[relation_key("a", "b")] == unfollowed
    # So a follow back from b is not credited to a.
    p.target_stage(p.actor_stage(ev("follow", "b", "a", 2)).forward)  # type: ignore[arg-type]
    assert not p.tables.relations[relation_key("a", "b")][0] & (FOLLOWS | FOLLOWED_BACK)
