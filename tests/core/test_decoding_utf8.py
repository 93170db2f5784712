"""The decoder checks UTF-8 only after orjson refused a message (a valid message is not decoded
twice). That relies on orjson refusing every invalid UTF-8 input: whatever the bytes, the
answer must be the one checking UTF-8 first gave."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.core.decoding import INVALID_UTF8, EventDecoder, Rejection
from service.core.models import Event
from service.settings import InputSettings


def decode(raw: bytes) -> Event | Rejection:
    return EventDecoder(InputSettings(), lambda: 2**62).decode(raw)


def utf8_first(raw: bytes) -> Event | Rejection:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
    return decode(raw)


NOT_UTF8 = [
    b'{"event_id": "\xff"}',
    b'"\xed\xa0\x80"',  # an encoded surrogate
    b'"\xc0\x80"',  # overlong NUL
    b'"\xe0\x80\xaf"',  # overlong '/'
    b'"\xf4\x90\x80\x80"',  # past U+10FFFF
    b'"\xf8\x88\x80\x80\x80"',  # five-byte form
    b'{"a":"\xe2\x82"}',  # truncated sequence
    b" \xff{}",  # outside any string
    b"{}\x80",  # after the value
]


@pytest.mark.parametrize("raw", NOT_UTF8)
def test_invalid_utf8_is_named_wherever_it_is(raw: bytes) -> None:
    result = decode(raw)
    assert isinstance(result, Rejection) and result.code == INVALID_UTF8
    assert result == utf8_first(raw)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.builds(
            lambda prefix, middle: prefix + middle + b'"}',
            st.just(b'{"event_id":"e1","type":"post","actor_id":"a","occurred_at":1,"text":"'),
            st.binary(max_size=12),
        ),
    )
)
@example(b'\xef\xbb\xbf{"event_id": "e1"}')
@example(b'"\\ud800"')
@example(orjson.dumps({"event_id": "e1", "type": "post", "actor_id": "a", "occurred_at": 1}))
def test_any_bytes_get_the_answer_utf8_first_gave(raw: bytes) -> None:
    assert decode(raw) == utf8_first(raw)
