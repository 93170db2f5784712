"""Timestamp parsing checks the common case first and remembers creation times; whatever the
input, the answer (value, or error type and message) must be what the plain parser gave."""

from __future__ import annotations

from datetime import datetime

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.core.models import parse_created_at_ms, parse_timestamp_ms


def plain_parser(value: object) -> int:
    """parse_timestamp_ms as it was first written."""
    if isinstance(value, bool):
        raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("epoch milliseconds must not be negative")
        return value
    if isinstance(value, str):
        if len(value) > 64 or "T" not in value.upper():
            raise ValueError("not an RFC 3339 date-time")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("not an RFC 3339 date-time") from None
        if parsed.tzinfo is None:
            raise ValueError("RFC 3339 date-time needs an offset (Z or +hh:mm)")
        return int(parsed.timestamp() * 1000)
    raise ValueError("a timestamp is an RFC 3339 string or integer epoch milliseconds")


def outcome(parse: object, value: object) -> object:
    try:
        return parse(value)  # type: ignore[operator]
    except Exception as exc:
        return (type(exc), str(exc))


STAMPS = st.one_of(
    st.sampled_from(
        [
            "2026-01-04T23:59:00Z",
            "2026-01-04t23:59:00z",
            "2026-01-05T00:59:00+01:00",
            "2026-01-04T23:59:00.250Z",
            "2026-01-04T23:59:00",
            "2026-01-04",
            "2026-01-04 23:59:00Z",
            "2026-01-04\u1e9723:59:00Z",  # upper-cases to a T and a combining mark
            "\ufb05",
            "9999-12-31T23:59:59-01:00",
            "T" * 65,
        ]
    ),
    st.text(max_size=30),
    st.text(alphabet="0123456789-:+.TtZz \ufb06\u1e97", max_size=30),
    st.integers(min_value=-(2**65), max_value=2**65),
    st.sampled_from([True, False, None, 1.5e12, 0.0, [], {}]),
)


@settings(max_examples=2000, deadline=None)
@given(STAMPS)
@example("2018-01-14T17:36:32.872Z")
def test_parsers_answer_what_the_plain_parser_answered(value: object) -> None:
    expected = outcome(plain_parser, value)
    assert outcome(parse_timestamp_ms, value) == expected
    assert outcome(parse_created_at_ms, value) == expected
    assert outcome(parse_created_at_ms, value) == expected  # from the cache this time
