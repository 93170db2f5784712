"""The three stages of an event, as pure functions over `Tables`.

    stage 1, keyed by actor A    outgoing counts, relations A→B, churn, duplicate text,
                                 facts about A (looks bought? asks for a share?)
    stage 2, keyed by target B   incoming counts, follow-backs, follower spikes, and the
                                 stranger check against B's own relation to A
    stage 3, keyed by requester  the tally of strangers asked (only for requests from strangers)

Every stage de-duplicates on the event id in its keyed account's state and ignores events
older than that account's lateness bound, so at-least-once delivery changes no count. The
pipeline turns detectors' alert intents into alerts: one per (rule, subject, episode) and
severity, with an id derived from those alone; the rule's mode (enforce, shadow, off) decides
only where an alert goes, never what it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from hashlib import blake2b
from typing import Any

from service.core.context import (
    ActorContext,
    AlertIntent,
    Config,
    Effects,
    RequesterContext,
    StrangerRequest,
    TargetContext,
    TargetMessage,
)
from service.core.models import (
    Alert,
    Event,
    EventType,
    Severity,
    ShadowAlert,
    format_timestamp,
)
from service.core.state import (
    E_LAST_TRIGGER,
    E_RANK,
    E_STARTED,
    FOLLOWED_BACK,
    FOLLOWS,
    R_BACK_EVENT,
    R_CHANGE_EVENT,
    R_CHANGE_OUTCOME,
    R_ENGAGED_AT,
    R_FLAGS,
    R_FOLLOWED_AT,
    RECEIVED_FOLLOW_BACK,
    ActorState,
    Episodes,
    Tables,
    TargetState,
    id_hash,
    relation_key,
)
from service.core.windows import HOUR_MS
from service.detectors import (
    ACTOR_DETECTORS,
    FACTS,
    REQUESTER_DETECTORS,
    RULES,
    TARGET_DETECTORS,
)
from service.settings import DetectionSettings, restart_only_fields

# Timeline kind of each event type; the numbering is shared by given and received kinds.
_KIND = {
    EventType.FOLLOW: 0,
    EventType.UNFOLLOW: 1,
    EventType.RETWEET: 2,
    EventType.REPLY: 3,
    EventType.MENTION: 4,
    EventType.POST: 5,
}
_ENGAGEMENTS = (EventType.RETWEET, EventType.REPLY, EventType.MENTION)
_ASKING_TYPES = (EventType.REPLY, EventType.MENTION)
# A relation's last-engaged time is rewritten at most this often: the horizon is 90 days, so
# finer resolution buys nothing and would cost a state write per engagement.
_ENGAGED_RESOLUTION_MS = HOUR_MS


# Outcome bits a relation keeps for the follow or unfollow that last changed it.
_STARTED, _CHURNED, _BACK = 1, 2, 4


class Outcome(Enum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    LATE = "late"
    SELF_TARGETED = "self_targeted"


@dataclass(slots=True)
class StageResult:
    outcome: Outcome
    alerts: list[Alert] = field(default_factory=list)  # enforced: for the alerts topic
    # Of rules in shadow mode: for the shadow topic only. A list of its own, so that a reader
    # of `alerts` that knows nothing of modes can never publish one as a real alert.
    shadow_alerts: list[ShadowAlert] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)  # rules whose intent an episode absorbed
    forward: TargetMessage | None = None
    stranger_requests: list[StrangerRequest] = field(default_factory=list)


class Pipeline:
    def __init__(
        self, settings: DetectionSettings, tables: Tables, clock_ms: Callable[[], int]
    ) -> None:
        self.config = Config(settings, RULES)
        self.tables = tables
        self._clock_ms = clock_ms
        self._ids_capacity = settings.state.recent_ids_per_account
        self._relations_capacity = settings.state.relations_per_account

    def reconfigure(self, settings: DetectionSettings) -> None:
        """Rule settings (modes, thresholds, patterns) for the next event of every stage: each
        stage reads `self.config` once per event. What shapes stored state stays as the
        pipeline was built with, so a change of it raises ValueError."""
        restart_only = restart_only_fields(self.config.settings, settings)
        if restart_only:
            raise ValueError(f"{', '.join(restart_only)}: needs a restart")
        self.config = Config(settings, RULES)

    # -- stage 1 ------------------------------------------------------------------------------
    def actor_stage(self, event: Event, position: int = -1, applied_upto: int = -1) -> StageResult:
        """Stage 1. `position` is where this event's message sits in its stage input and
        `applied_upto` the last position whose effects, forwards included, are known stored;
        a duplicate applied at or before it is not forwarded again (the worker passes stage
        message offsets; replay passes nothing)."""
        config = self.config
        tables = self.tables
        actor_id = event.actor_id
        state = tables.actors.get(actor_id)
        if state is None:
            state = ActorState()
        at = event.occurred_at
        h = id_hash(event.event_id)
        ids = state.ids
        if at < state.watermark - config.lateness_ms or at <= ids.floor:
            return StageResult(Outcome.LATE)
        target_id = event.target_id
        if h in ids:
            # A crash can persist this account's state but lose the relation row or the
            # forward written with it (separate tables and topics). Re-apply the relation
            # change (idempotent per event) and forward again; stage 2 de-duplicates.
            forward = None
            if target_id is not None and target_id != actor_id:
                if not self._relation_changed_after(state, actor_id, target_id, event.type, h):
                    self._update_relation(state, actor_id, target_id, event.type, at, h)
                    tables.actors[actor_id] = state
                original = state.ids.position_of(h)
                if original < 0 or original > applied_upto:
                    forward = self._target_message(event, h, state)
            return StageResult(Outcome.DUPLICATE, forward=forward)
        if at > state.watermark:
            state.watermark = at
        ids.remember(h, at, state.watermark - config.lateness_ms, self._ids_capacity, position)
        if target_id == actor_id:
            tables.actors[actor_id] = state
            return StageResult(Outcome.SELF_TARGETED)

        kind = event.type
        forward = None
        if target_id is not None:
            # Facts about the actor as it was before this event.
            forward = self._target_message(event, h, state)
        state.given.add(config.given_levels, at, _KIND[kind])
        started_follow = churned = churned_back = False
        if target_id is not None:
            started_follow, churned, churned_back = self._update_relation(
                state, actor_id, target_id, kind, at, h
            )
        effects = Effects()
        ctx = ActorContext(
            config=config,
            event=event,
            state=state,
            started_follow=started_follow,
            churned_pair=churned,
            churned_pair_followed_back=churned_back,
            incoming=tables.targets.get(actor_id) if kind is EventType.UNFOLLOW else None,
            effects=effects,
        )
        for detect in ACTOR_DETECTORS:
            detect(ctx)
        result = StageResult(Outcome.PROCESSED, forward=forward)
        if effects.alerts:
            self._apply(effects, state.episodes, result)
        tables.actors[actor_id] = state
        return result

    def _target_message(self, event: Event, h: int, state: ActorState) -> TargetMessage:
        kind = event.type
        asks = (
            kind in _ASKING_TYPES
            and event.text is not None
            and self.config.matcher.asks_for_share(event.text)
        )
        follow = kind is EventType.FOLLOW
        quality = FACTS.follower_quality(self.config, event, state) if follow else 0
        co_follows = FACTS.co_follows(self.config, event, state) if follow else ()
        return TargetMessage(
            event_id=event.event_id,
            event_hash=h,
            type=kind,
            actor_id=event.actor_id,
            target_id=event.target_id or "",
            occurred_at=event.occurred_at,
            asks_for_share=asks,
            follower_quality=quality,
            co_follows=co_follows,
        )

    def _relation_changed_after(
        self, state: ActorState, actor_id: str, target_id: str, kind: EventType, h: int
    ) -> bool:
        """Did a follow or unfollow that arrived after event `h` already change this relation?

        Then the relation row is newer than `h` and re-applying `h` would undo that change (a
        late copy of a follow re-following after the unfollow). Arrival order is the order
        stage 1 applies changes in; `ids` keeps it for every event within the lateness bound.
        """
        if kind is not EventType.FOLLOW and kind is not EventType.UNFOLLOW:
            return False
        relation = self.tables.relations.get(relation_key(actor_id, target_id))
        if relation is None or relation[R_CHANGE_EVENT] == h:
            return False
        return state.ids.arrived_after(relation[R_CHANGE_EVENT], h)

    def _update_relation(
        self, state: ActorState, actor_id: str, target_id: str, kind: EventType, at: int, h: int
    ) -> tuple[bool, bool, bool]:
        """Apply the event to relation actor→target; say (started follow, churned pair,
        churned pair had been followed back).

        Follows and unfollows record their event hash and outcome in the relation, so the same
        event applied again (a crash replay where the relation row was saved but the actor's
        state was not) gives the same answer instead of a different one.
        """
        relations = self.tables.relations
        key = relation_key(actor_id, target_id)
        relation = relations.get(key)
        if kind is not EventType.FOLLOW and kind is not EventType.UNFOLLOW:
            if kind in _ENGAGEMENTS:
                if relation is None:
                    if self._room_for_relation(state):
                        relations[key] = [0, -1, at, 0, 0]
                elif at - relation[R_ENGAGED_AT] >= _ENGAGED_RESOLUTION_MS:
                    row = relation.copy()
                    row[R_ENGAGED_AT] = at
                    relations[key] = row
            return False, False, False
        if relation is not None and relation[R_CHANGE_EVENT] == h:
            outcome = relation[R_CHANGE_OUTCOME]
            return bool(outcome & _STARTED), bool(outcome & _CHURNED), bool(outcome & _BACK)
        if relation is None:
            if kind is EventType.UNFOLLOW or not self._room_for_relation(state):
                return False, False, False
            relation = [0, -1, -1, 0, 0]
        flags = relation[R_FLAGS]
        followed_at, engaged_at = relation[R_FOLLOWED_AT], relation[R_ENGAGED_AT]
        outcome = 0
        if kind is EventType.FOLLOW:
            if not flags & FOLLOWS:
                flags = (flags | FOLLOWS) & ~FOLLOWED_BACK
                followed_at = at
                outcome = _STARTED
        elif flags & FOLLOWS:
            if FACTS.churned(self.config, followed_at, at):
                outcome = _CHURNED | (_BACK if flags & FOLLOWED_BACK else 0)
            flags &= ~(FOLLOWS | FOLLOWED_BACK)
            followed_at = -1
        else:
            return False, False, False
        # An unfollowed relation stays (flags 0) so that a replayed unfollow still finds its
        # outcome; it counts against relations_per_account like any other. A follow-back mark
        # that survives this change keeps the event that set it.
        row = [flags, followed_at, engaged_at, h, outcome]
        if flags & FOLLOWED_BACK:
            row.extend(relation[R_BACK_EVENT : R_BACK_EVENT + 1])
        relations[key] = row
        return bool(outcome & _STARTED), bool(outcome & _CHURNED), bool(outcome & _BACK)

    def _room_for_relation(self, state: ActorState) -> bool:
        if state.relation_count >= self._relations_capacity:
            return False
        state.relation_count += 1
        return True

    # -- stage 2 ------------------------------------------------------------------------------
    def target_stage(self, message: TargetMessage) -> StageResult:
        config = self.config
        tables = self.tables
        target_id = message.target_id
        state = tables.targets.get(target_id)
        if state is None:
            state = TargetState()
        at = message.occurred_at
        h = message.event_hash
        # No event-time lateness here: stage 2 merges all actor partitions, so its disorder is
        # the skew between them, not the producers'. Stage 1 already refused late events;
        # what arrives twice here is a re-forward or a crash replay, both recent arrivals.
        if h in state.ids:
            return StageResult(Outcome.DUPLICATE)
        state.ids.remember_arrival(h, self._ids_capacity)
        if at > state.watermark:
            state.watermark = at
        if state.first_seen < 0 or at < state.first_seen:
            state.first_seen = at
        state.received.add(config.received_levels, at, _KIND[message.type])

        key = relation_key(target_id, message.actor_id)
        relation = tables.relations.get(key)
        follows_actor = relation is not None and bool(relation[R_FLAGS] & FOLLOWS)
        if message.type is EventType.FOLLOW and relation is not None and follows_actor:
            if not relation[R_FLAGS] & FOLLOWED_BACK:
                # The actor returned the target's follow: the target's follow was followed back.
                row = relation[:R_BACK_EVENT]
                row[R_FLAGS] |= FOLLOWED_BACK
                tables.relations[key] = [*row, h]
                state.received.add(config.received_levels, at, RECEIVED_FOLLOW_BACK)
            elif relation[R_BACK_EVENT : R_BACK_EVENT + 1] == [h]:
                # This very follow set the mark, and a crash stored it but lost the target's
                # state that counted it (the worker stores relations first): count it again.
                state.received.add(config.received_levels, at, RECEIVED_FOLLOW_BACK)
        effects = Effects()
        ctx = TargetContext(
            config=config,
            message=message,
            state=state,
            target_follows_actor=follows_actor,
            target_engaged_actor_at=relation[R_ENGAGED_AT] if relation is not None else -1,
            effects=effects,
        )
        for detect in TARGET_DETECTORS:
            detect(ctx)
        result = StageResult(Outcome.PROCESSED, stranger_requests=effects.stranger_requests)
        if effects.alerts:
            self._apply(effects, state.episodes, result)
        tables.targets[target_id] = state
        return result

    # -- stage 3 ------------------------------------------------------------------------------
    def requester_stage(self, request: StrangerRequest) -> StageResult:
        tables = self.tables
        requester_id = request.requester_id
        state = tables.actors.get(requester_id)
        if state is None:
            state = ActorState()
        h = request.event_hash
        if h in state.request_ids:
            return StageResult(Outcome.DUPLICATE)
        state.request_ids.remember_arrival(h, self._ids_capacity)
        effects = Effects()
        ctx = RequesterContext(config=self.config, request=request, state=state, effects=effects)
        for detect in REQUESTER_DETECTORS:
            detect(ctx)
        result = StageResult(Outcome.PROCESSED)
        self._apply(effects, state.episodes, result)
        tables.actors[requester_id] = state
        return result

    # -- effects ------------------------------------------------------------------------------
    def _apply(self, effects: Effects, episodes: Episodes, result: StageResult) -> None:
        """Intents to alerts, by their rule's mode. An off rule's detector still ran (its state
        stays warm, and no other rule's state depends on its mode); its intents are dropped
        before the episode gate, so they open no episode. A shadow rule goes through the same
        gate as an enforced one, so it raises the same alerts, only marked and routed apart."""
        modes = self.config.modes
        for intent in effects.alerts:
            mode = modes[intent.rule]
            if mode == "off":
                continue
            episode_start = self._gate(intent, episodes)
            if episode_start is None:
                result.suppressed.append(intent.rule)
            elif mode == "shadow":
                fields = self._alert_fields(intent, episode_start)
                result.shadow_alerts.append(ShadowAlert(**fields, mode="shadow"))
            else:
                result.alerts.append(Alert(**self._alert_fields(intent, episode_start)))

    def _gate(self, intent: AlertIntent, episodes: Episodes) -> int | None:
        """One alert per episode and severity: a new episode starts when the rule triggers after
        a quiet gap; inside an episode only a higher severity is sent. Returns the start of the
        episode to alert for, or None when the episode absorbs the intent."""
        episode = episodes.get(intent.rule)
        rank = intent.severity.rank
        if episode is None or intent.at_ms - episode[E_LAST_TRIGGER] > intent.episode_gap_ms:
            episode = [intent.at_ms, intent.at_ms, rank]
            episodes[intent.rule] = episode
        else:
            episode[E_LAST_TRIGGER] = max(episode[E_LAST_TRIGGER], intent.at_ms)
            if rank <= episode[E_RANK]:
                return None
            episode[E_RANK] = rank
        return episode[E_STARTED]

    def _alert_fields(self, intent: AlertIntent, episode_start_ms: int) -> dict[str, Any]:
        """The fields of the alert for `intent`: the same whatever the rule's mode."""
        return {
            "alert_id": alert_id(intent.rule, intent.subject_id, intent.severity, episode_start_ms),
            "rule": intent.rule,
            "rule_version": self.config.rule_versions[intent.rule],
            "severity": intent.severity,
            "subject_id": intent.subject_id,
            "related_ids": intent.related_ids[:100],
            "window_start": format_timestamp(intent.window_start_ms),
            "window_end": format_timestamp(intent.window_end_ms),
            "detected_at": format_timestamp(self._clock_ms()),
            "evidence": {
                **intent.evidence,
                "episode_started_at": format_timestamp(episode_start_ms),
            },
            "summary": intent.summary,
        }


def alert_id(rule: str, subject_id: str, severity: Severity, episode_start_ms: int) -> str:
    material = f"{rule}\x1f{subject_id}\x1f{severity.value}\x1f{episode_start_ms}"
    return blake2b(material.encode(), digest_size=16).hexdigest()
