"""Compact sliding windows in event time.

A window is a short list of buckets, each a row `[bucket_index, count_0, count_1, ...]`,
newest last, holding only buckets that saw events. The value is plain lists of ints, so it
serializes to a few bytes per active bucket and its size is bounded by the number of buckets a
`BucketSpec` keeps, whatever the event rate.

Bucketing means a window of `span` with buckets of `width` covers the last `span // width`
buckets including the current, partly filled one: between `span - width` and `span` of time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BucketSpec:
    width_ms: int
    keep: int  # buckets retained: the longest window read plus room for late events
    kinds: int  # counters per bucket

    def new_row(self, index: int) -> list[int]:
        row = [0] * (self.kinds + 1)
        row[0] = index
        return row


def add(rows: list[list[int]], spec: BucketSpec, at_ms: int, kind: int, n: int = 1) -> bool:
    """Count `n` of `kind` at event time `at_ms`; False if that bucket has already expired."""
    index = at_ms // spec.width_ms
    if rows:
        newest = rows[-1]
        newest_index = newest[0]
        if index == newest_index:
            newest[kind + 1] += n
            return True
        if index < newest_index:
            return _add_late(rows, spec, index, kind, n, newest_index)
    row = spec.new_row(index)
    row[kind + 1] = n
    rows.append(row)
    oldest_kept = index - spec.keep
    while rows[0][0] <= oldest_kept:
        del rows[0]
    return True


def _add_late(
    rows: list[list[int]], spec: BucketSpec, index: int, kind: int, n: int, newest_index: int
) -> bool:
    if index <= newest_index - spec.keep:
        return False
    position = len(rows) - 1
    while position >= 0 and rows[position][0] > index:
        position -= 1
    if position >= 0 and rows[position][0] == index:
        rows[position][kind + 1] += n
    else:
        row = spec.new_row(index)
        row[kind + 1] = n
        rows.insert(position + 1, row)
    return True


def total(rows: list[list[int]], spec: BucketSpec, kind: int, now_ms: int, span_ms: int) -> int:
    """Sum of `kind` over the `span_ms // width` buckets ending with the one holding `now_ms`."""
    newest = now_ms // spec.width_ms
    oldest = newest - max(1, span_ms // spec.width_ms)
    column = kind + 1
    result = 0
    for row in reversed(rows):
        index = row[0]
        if index <= oldest:
            break
        if index <= newest:
            result += row[column]
    return result


def totals(rows: list[list[int]], spec: BucketSpec, now_ms: int, span_ms: int) -> list[int]:
    """All kinds at once, same window as `total`."""
    newest = now_ms // spec.width_ms
    oldest = newest - max(1, span_ms // spec.width_ms)
    result = [0] * spec.kinds
    for row in reversed(rows):
        index = row[0]
        if index <= oldest:
            break
        if index <= newest:
            for kind in range(spec.kinds):
                result[kind] += row[kind + 1]
    return result


def totals_over(
    rows: list[list[int]], spec: BucketSpec, now_ms: int, spans_ms: tuple[int, ...]
) -> list[list[int]]:
    """`totals` for several windows, shortest first, in one pass over the rows."""
    newest = now_ms // spec.width_ms
    bounds = [newest - max(1, span // spec.width_ms) for span in spans_ms]
    running = [0] * spec.kinds
    results: list[list[int]] = []
    for row in reversed(rows):
        index = row[0]
        while len(results) < len(bounds) and index <= bounds[len(results)]:
            results.append(running.copy())
        if len(results) == len(bounds):
            return results
        if index <= newest:
            for kind, count in enumerate(row[1:]):
                running[kind] += count
    while len(results) < len(bounds):
        results.append(running.copy())
    return results


MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000


Levels = tuple[BucketSpec, BucketSpec, BucketSpec]


def timeline_levels(kinds: int, lateness_ms: int) -> Levels:
    """Three resolutions for the 1 h, 24 h and 7 d windows, each with room for late events.
    Each width is a multiple of the finer one, which `Timeline.add` relies on."""
    five_minutes = 5 * MINUTE_MS

    def keep(span_ms: int, width_ms: int) -> int:
        return span_ms // width_ms + 1 + -(-lateness_ms // width_ms)

    return (
        BucketSpec(five_minutes, keep(HOUR_MS, five_minutes), kinds),
        BucketSpec(HOUR_MS, keep(DAY_MS, HOUR_MS), kinds),
        BucketSpec(DAY_MS, keep(7 * DAY_MS, DAY_MS), kinds),
    )


WINDOW_1H, WINDOW_24H, WINDOW_7D = HOUR_MS, DAY_MS, 7 * DAY_MS
_LEVEL_FOR_WINDOW = {WINDOW_1H: 0, WINDOW_24H: 1, WINDOW_7D: 2}


def _level_for(window_ms: int) -> int:
    """The resolution a window is read at: 1 h in 5-minute buckets, whole hours up to a day
    in hourly ones, whole days up to a week in daily ones."""
    level = _LEVEL_FOR_WINDOW.get(window_ms)
    if level is not None:
        return level
    if window_ms % HOUR_MS == 0 and window_ms <= DAY_MS:
        return 1
    if window_ms % DAY_MS == 0 and window_ms <= 7 * DAY_MS:
        return 2
    raise ValueError(f"a {window_ms} ms window is not whole hours up to a day or days to a week")


class Timeline:
    """Per-kind counts readable over 1 h, 24 h and 7 d; at most 14 + 26 + 9 buckets with the
    default lateness."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[list[list[int]]] | None = None) -> None:
        self.rows: list[list[list[int]]] = rows if rows is not None else [[], [], []]

    def add(self, levels: Levels, at_ms: int, kind: int, n: int = 1) -> bool:
        """Count at all three resolutions; False if the finest bucket has already expired.

        What `add` does at each level, unrolled: this runs for every event. Each level's
        newest row is the bucket of the newest time ever added, and each width is a multiple of
        the finer one, so an event in the newest 5-minute bucket is in the newest bucket of
        every level, and an event opening a new 5-minute bucket is in or after the newest
        bucket of every coarser level."""
        fine, hourly, daily = self.rows
        column = kind + 1
        fine_spec = levels[0]
        index = at_ms // fine_spec.width_ms
        newest_index = None
        if fine:
            newest = fine[-1]
            newest_index = newest[0]
            if newest_index == index:
                newest[column] += n
                hourly[-1][column] += n
                daily[-1][column] += n
                return True
            if index < newest_index:
                accepted = _add_late(fine, fine_spec, index, kind, n, newest_index)
                add(hourly, levels[1], at_ms, kind, n)
                add(daily, levels[2], at_ms, kind, n)
                return accepted
        row = [0] * (fine_spec.kinds + 1)
        row[0] = index
        row[column] = n
        fine.append(row)
        oldest_kept = index - fine_spec.keep
        while fine[0][0] <= oldest_kept:
            del fine[0]
        # The coarser levels' newest buckets hold the previous newest 5-minute one: comparing
        # with it spares reading their rows' (cold) indexes.
        spec = levels[1]
        index = at_ms // spec.width_ms
        if (
            index == newest_index // (spec.width_ms // fine_spec.width_ms)
            if newest_index is not None
            else hourly and hourly[-1][0] == index
        ):
            hourly[-1][column] += n
        else:
            row = [0] * (spec.kinds + 1)
            row[0] = index
            row[column] = n
            hourly.append(row)
            oldest_kept = index - spec.keep
            while hourly[0][0] <= oldest_kept:
                del hourly[0]
        spec = levels[2]
        index = at_ms // spec.width_ms
        if (
            index == newest_index // (spec.width_ms // fine_spec.width_ms)
            if newest_index is not None
            else daily and daily[-1][0] == index
        ):
            daily[-1][column] += n
        else:
            row = [0] * (spec.kinds + 1)
            row[0] = index
            row[column] = n
            daily.append(row)
            oldest_kept = index - spec.keep
            while daily[0][0] <= oldest_kept:
                del daily[0]
        return True

    def total(self, levels: Levels, kind: int, now_ms: int, window_ms: int) -> int:
        level = _level_for(window_ms)
        return total(self.rows[level], levels[level], kind, now_ms, window_ms)

    def totals(self, levels: Levels, now_ms: int, window_ms: int) -> list[int]:
        level = _level_for(window_ms)
        return totals(self.rows[level], levels[level], now_ms, window_ms)
