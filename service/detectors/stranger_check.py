"""stranger_check: a request to share reaching an account that neither follows the requester
nor engaged with them within the relationship horizon is a request from a stranger. Stage 2,
keyed by the recipient; the tally and the alert happen in `unsolicited_retweet_request`."""

from __future__ import annotations

from service.core.context import StrangerRequest, TargetContext
from service.core.windows import DAY_MS


def detect(ctx: TargetContext) -> None:
    message = ctx.message
    if not message.asks_for_share:
        return
    if ctx.target_follows_actor:
        return
    horizon_ms = ctx.config.settings.unsolicited_retweet_request.relationship_horizon_days * DAY_MS
    engaged_at = ctx.target_engaged_actor_at
    if engaged_at >= 0 and message.occurred_at - engaged_at <= horizon_ms:
        return
    ctx.effects.stranger_requests.append(
        StrangerRequest(
            event_id=message.event_id,
            event_hash=message.event_hash,
            requester_id=message.actor_id,
            stranger_id=message.target_id,
            occurred_at=message.occurred_at,
        )
    )
