"""Golden alert payloads: one scenario per rule, the whole JSON compared byte for byte.

Regenerate after an intended change with `pytest tests/core/test_alert_payloads.py --update-golden`
and review the diff: these files are what moderation tools receive.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from service.core.models import BREAKER_RULE, Event
from service.settings import DetectionSettings
from tests.events import ESTABLISHED, FRESH, ev, replay

GOLDEN = Path(__file__).resolve().parent / "golden"
PITCH = "Earn 500$ a day from home, DM me for the secret"


def scenario(name: str) -> list[Event]:
    n = iter(range(10_000))

    def e(*args: object, **kwargs: object) -> Event:
        return ev(*args, event_id=f"{name}-{next(n)}", **kwargs)  # type: ignore[arg-type]

    if name == "unsolicited_retweet_request":
        return [e("follow", "friend", "asker", 0)] + [
            e("mention", "asker", target, 1 + i, text="@x please RT my pinned post 🙏")
            for i, target in enumerate(["friend", "s1", "s2", "s3"])
        ]
    if name == "follower_spike":
        return [e("follow", f"fan{i}", "shop", i * 2, snapshot=ESTABLISHED) for i in range(20)] + [
            e("follow", f"fake{i}", "shop", 60 + i * 0.2, snapshot=FRESH) for i in range(30)
        ]
    if name == "follow_churn":
        events = []
        for i in range(50):
            events.append(e("follow", "churner", f"t{i}", i))
            events.append(e("unfollow", "churner", f"t{i}", 100 + i))
        return sorted(events, key=lambda x: x.occurred_at)
    if name == "duplicate_reply_spam":
        return [e("reply", "spammer", f"v{i}", i * 3, text=f"@v{i} {PITCH}") for i in range(5)]
    if name == BREAKER_RULE:  # two spammers within the hour, against a quota of one an hour
        return [
            e("reply", spammer, f"v{i}", offset + i * 3, text=f"@v{i} {PITCH}")
            for spammer, offset in (("spammer", 0), ("spammer2", 20))
            for i in range(5)
        ]
    raise ValueError(name)


RULES = [
    "unsolicited_retweet_request",
    "follower_spike",
    "follow_churn",
    "duplicate_reply_spam",
    BREAKER_RULE,
]
SETTINGS = {
    BREAKER_RULE: DetectionSettings.model_validate({"duplicate_reply_spam": {"quota_per_hour": 1}}),
}


@pytest.mark.parametrize("rule", RULES)
def test_alert_payload_matches_golden(rule: str, update_golden: bool) -> None:
    alerts = [a for a in replay(scenario(rule), SETTINGS.get(rule)) if a.rule == rule]
    assert alerts, "the scenario must alert"
    rendered = b"".join(
        orjson.dumps(a.model_dump(mode="json"), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        + b"\n"
        for a in alerts
    )
    path = GOLDEN / f"{rule}.json"
    if update_golden:
        path.write_bytes(rendered)
    assert path.read_bytes() == rendered
