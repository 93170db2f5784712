"""The naive baseline: reciprocity counts the way the Faust documentation teaches them.

Run as `python -m bench.naive_faust BOOTSTRAP TOPIC COUNT OUT`; writes the seconds from its
first event to its COUNT-th into the file OUT, as `bench.bare_faust` does, and exits.

One agent; the topic's values decoded by Faust's JSON codec; one tumbling-window table (1 h
windows kept 7 days, in event time) keyed by actor, target and event type, counting events:
`counts[f"{actor} {target} {type}"] += 1` per event. Faust stores each increment in its table
and sends it to the changelog through its per-key write path. A's engagement given to B and
received from B are the rows "A B type" and "B A type": per-pair reciprocity in one write per
event. It keeps no de-duplication, detectors or other windows: far less work than our worker,
done the straightforward way.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

from bench.bare_faust import DrainClock, baseline_app, run_worker
from service.core.models import parse_timestamp_ms

WINDOW = timedelta(hours=1)
KEPT = timedelta(days=7)


def event_time(event: Any) -> float:
    """Windows follow `occurred_at` (RFC 3339 or epoch ms), not the Kafka timestamp."""
    return parse_timestamp_ms(event.value["occurred_at"]) / 1000


def main() -> None:
    bootstrap, topic_name, expected, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    app = baseline_app("naive", bootstrap, topic_partitions=8)
    topic = app.topic(topic_name, value_serializer="json")
    windowed: Any = app.Table("reciprocity_counts", default=int).tumbling(WINDOW, expires=KEPT)
    counts = windowed.relative_to(event_time)
    drained = DrainClock(expected, out)

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for event in stream:
            counts[f"{event['actor_id']} {event.get('target_id', '')} {event['type']}"] += 1
            drained.one_more()

    run_worker(app)


if __name__ == "__main__":
    main()
