"""Recent ids answer membership from a set once their list is long; the answers, the lists and
the floor must be what the lists alone gave, through any mix of remembering and forgetting."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.state import INDEXED_FROM, RecentIds

CAPACITY = INDEXED_FROM + 8


class ListsOnly:
    """RecentIds as it was before the set: membership scans the list."""

    def __init__(self) -> None:
        self.hashes: list[int] = []
        self.times: list[int] = []
        self.positions: list[int] = []
        self.floor = -1

    def remember(self, h: int, at_ms: int, oldest_useful_ms: int, position: int) -> None:
        self.hashes.append(h)
        self.times.append(at_ms)
        self.positions.append(position)
        while self.times and self.times[0] < oldest_useful_ms:
            del self.hashes[0], self.times[0], self.positions[0]
        while len(self.hashes) > CAPACITY:
            self.floor = max(self.floor, self.times[0])
            del self.hashes[0], self.times[0], self.positions[0]

    def remember_arrival(self, h: int) -> None:
        self.hashes.append(h)
        if len(self.hashes) > CAPACITY:
            del self.hashes[0]

    def to_value(self) -> list[Any]:
        return [self.floor, self.hashes, self.times, self.positions]


# Few distinct hashes, so that lookups often hit; times mostly rising, sometimes far ahead.
HASHES = st.integers(0, 60)


@settings(max_examples=300, deadline=None)
@given(
    by_time=st.booleans(),
    steps=st.lists(
        st.tuples(HASHES, st.integers(0, 2), st.integers(0, 60)), min_size=40, max_size=200
    ),
)
def test_the_set_answers_what_the_list_answered(
    by_time: bool, steps: list[tuple[int, int, int]]
) -> None:
    ids, expected = RecentIds(), ListsOnly()
    now = 0
    for h, step, horizon in steps:
        now += step
        seen = h in expected.hashes
        assert (h in ids) == seen
        if seen:
            continue  # the stages remember an id only when it is not there yet
        if by_time:
            ids.remember(h, now, now - horizon, CAPACITY, position=now)
            expected.remember(h, now, now - horizon, position=now)
        else:
            ids.remember_arrival(h, CAPACITY)
            expected.remember_arrival(h)
        assert ids.to_value() == expected.to_value()
    for h in range(61):
        assert (h in ids) == (h in expected.hashes)


def test_a_restored_list_is_indexed_as_it_grows() -> None:
    hashes = list(range(100, 100 + INDEXED_FROM + 2))
    ids = RecentIds.from_value([-1, list(hashes), [], []])
    assert 101 in ids and 7 not in ids
    ids.remember_arrival(7, len(hashes))  # the oldest, 100, is forgotten
    assert 7 in ids and 100 not in ids and 101 in ids
    assert ids.hashes == [*hashes[1:], 7]
