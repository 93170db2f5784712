"""Sliding windows in event time. Each scenario draws its timeline: one column per minute
bucket (width 60 s), `x` an event, `|` where the window is read."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.windows import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    BucketSpec,
    Levels,
    Timeline,
    add,
    timeline_levels,
    total,
    totals,
)

# 5 one-minute buckets read, 2 more kept for events up to 2 min late.
SPEC = BucketSpec(width_ms=MINUTE_MS, keep=7, kinds=2)
SPAN = 5 * MINUTE_MS


def at(minute: float) -> int:
    return int(minute * MINUTE_MS)


def test_window_counts_the_last_buckets_including_the_current_one() -> None:
    # minute: 0 1 2 3 4 5 6 7
    # events: x x . . x . x |      read at 7:30, span 5 min -> buckets 3..7
    rows: list[list[int]] = []
    for minute in (0, 1, 4, 6):
        assert add(rows, SPEC, at(minute), 0)
    assert total(rows, SPEC, 0, at(7.5), SPAN) == 2  # minutes 4 and 6
    assert total(rows, SPEC, 0, at(4.5), SPAN) == 3  # minutes 0..4 -> 0, 1, 4


def test_bucket_edges_belong_to_the_later_bucket() -> None:
    # minute: 0 | 1 |
    # events: x at 0:59.999 lands in bucket 0, x at 1:00.000 in bucket 1
    rows: list[list[int]] = []
    add(rows, SPEC, at(1) - 1, 0)
    add(rows, SPEC, at(1), 0)
    assert rows == [[0, 1, 0], [1, 1, 0]]
    # Read at 5:00 covers buckets 1..5: the event at 0:59.999 has just left the window.
    assert total(rows, SPEC, 0, at(5), SPAN) == 1


def test_old_buckets_are_dropped_as_new_ones_arrive() -> None:
    # minute: 0 1 ........ 9
    # events: x x          x    bucket 9 arrives; keep=7 keeps buckets 3..9 only
    rows: list[list[int]] = []
    for minute in (0, 1, 9):
        add(rows, SPEC, at(minute), 1)
    assert [row[0] for row in rows] == [9]
    assert totals(rows, SPEC, at(9), SPAN) == [0, 1]


def test_late_event_within_bound_lands_in_its_bucket() -> None:
    # minute: 0 1 2 3 4 5 6
    # events: x . . . . . x     then a late x for minute 2 arrives after minute 6
    rows: list[list[int]] = []
    add(rows, SPEC, at(0), 0)
    add(rows, SPEC, at(6), 0)
    assert add(rows, SPEC, at(2.5), 0)
    assert [row[0] for row in rows] == [0, 2, 6]
    assert total(rows, SPEC, 0, at(6), SPAN) == 2  # buckets 2..6


def test_event_older_than_kept_buckets_is_refused() -> None:
    # minute: 0 ............ 10
    # events: .              x   then x for minute 3: bucket 3 <= 10 - keep(7): refused
    rows: list[list[int]] = []
    add(rows, SPEC, at(10), 0)
    assert not add(rows, SPEC, at(3), 0)
    assert add(rows, SPEC, at(4), 0)
    assert total(rows, SPEC, 0, at(10), 7 * MINUTE_MS) == 2


@pytest.mark.parametrize("lateness_s", [0, 60, 300])
def test_timeline_reads_1h_24h_7d(lateness_s: int) -> None:
    # day:    0 ........................... 6    7
    # events: x (day 0, 00:10)  x (day 6, 23:00)  x (day 6, 23:50)   read at day 6, 23:55
    levels = timeline_levels(2, lateness_s * 1000)
    timeline = Timeline()
    start = 10 * MINUTE_MS
    timeline.add(levels, start, 0)
    timeline.add(levels, 6 * DAY_MS + 23 * HOUR_MS, 0)
    timeline.add(levels, 6 * DAY_MS + 23 * HOUR_MS + 50 * MINUTE_MS, 1)
    now = 6 * DAY_MS + 23 * HOUR_MS + 55 * MINUTE_MS
    assert timeline.totals(levels, now, HOUR_MS) == [1, 1]
    assert timeline.totals(levels, now, DAY_MS) == [1, 1]
    assert timeline.totals(levels, now, 7 * DAY_MS) == [2, 1]
    # A day later the first event has left the 7 d window.
    assert timeline.total(levels, 0, now + DAY_MS, 7 * DAY_MS) == 1


def test_timeline_state_is_bounded_whatever_the_rate() -> None:
    levels = timeline_levels(1, 60_000)
    timeline = Timeline()
    for second in range(0, 30 * 86_400, 37):
        timeline.add(levels, second * 1000, 0)
    sizes = [len(level) for level in timeline.rows]
    assert sizes == [spec.keep for spec in levels]
    assert sizes[0] <= 14 and sizes[1] <= 26 and sizes[2] <= 9


def three_adds(rows: list[list[list[int]]], levels: Levels, at_ms: int, kind: int) -> bool:
    """What `Timeline.add` does: the same event counted at each resolution on its own."""
    accepted = add(rows[0], levels[0], at_ms, kind)
    add(rows[1], levels[1], at_ms, kind)
    add(rows[2], levels[2], at_ms, kind)
    return accepted


def test_timeline_counts_the_newest_bucket_at_every_level() -> None:
    # 5-min bucket:  0 ...  11 | 12          (hour 0 ends after bucket 11)
    # events:        x      xx   x x  x(late, bucket 11)
    # The two in bucket 11 and the two in bucket 12 land in the newest bucket of every level;
    # the late one goes back to bucket 11 and hour 0.
    levels = timeline_levels(2, 5 * MINUTE_MS)
    timeline = Timeline()
    expected: list[list[list[int]]] = [[], [], []]
    for minute, kind in ((1, 0), (57, 0), (58, 1), (60, 0), (61, 0), (59, 1)):
        assert timeline.add(levels, at(minute), kind) == three_adds(
            expected, levels, at(minute), kind
        )
    assert timeline.rows == expected
    assert timeline.rows[0] == [[0, 1, 0], [11, 1, 2], [12, 2, 0]]
    assert timeline.rows[1] == [[0, 2, 2], [1, 2, 0]]
    assert timeline.rows[2] == [[0, 4, 2]]


@settings(max_examples=300, deadline=None)
@given(
    lateness_s=st.sampled_from([0, 60, 300, 960]),
    steps=st.lists(
        st.tuples(
            # mostly small steps forward in time, sometimes a jump, sometimes back (late)
            st.one_of(
                st.integers(0, 3 * MINUTE_MS),
                st.integers(0, 2 * DAY_MS),
                st.integers(-20 * MINUTE_MS, 0),
                st.integers(-2 * DAY_MS, 0),
            ),
            st.integers(0, 2),
        ),
        max_size=120,
    ),
)
def test_timeline_add_is_three_separate_adds(lateness_s: int, steps: list[tuple[int, int]]) -> None:
    levels = timeline_levels(3, lateness_s * 1000)
    timeline = Timeline()
    expected: list[list[list[int]]] = [[], [], []]
    now = 30 * DAY_MS
    for step, kind in steps:
        now = max(0, now + step)
        assert timeline.add(levels, now, kind) == three_adds(expected, levels, now, kind)
        assert timeline.rows == expected
