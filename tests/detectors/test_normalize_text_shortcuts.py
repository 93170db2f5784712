"""`normalize_text` skips the URL and mention patterns when a casefolded text cannot match them;
the result must be what running both patterns on every text gives."""

from __future__ import annotations

import re
import sys

from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.detectors.duplicate_reply_spam import (
    _MENTION,
    _SPACE,
    _URL,
    _WORD,
    normalize_text,
    text_words,
)


def every_pattern(text: str) -> str:
    text = _URL.sub(" <url> ", text.casefold())
    text = _MENTION.sub(" ", text)
    return _SPACE.sub(" ", text).strip()


def test_only_ascii_letters_match_the_url_letters_ignoring_case() -> None:
    characters = "".join(map(chr, range(sys.maxunicode + 1)))
    matched = set(re.findall(r"[htpw.:/@]", characters, re.IGNORECASE))
    assert matched == set("htpwHTPW.:/@")
    # and casefolding never leaves an upper-case one behind
    assert not set("HTPW") & set(characters.casefold())


WORDS = ["http://x.co/a", "HTTPS://X.CO", "www.Site.org", "WWW.", "@bob", "a@b", "ＨＴＴＰ://", "ſ"]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=8)), max_size=8))
@example(["Ｈttp://x"])
@example(["\u0130", "http://ok"])
def test_shortcuts_change_nothing(parts: list[str]) -> None:
    text = " ".join(parts)
    assert normalize_text(text) == every_pattern(text)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
@settings(max_examples=300)
def test_ascii_words_are_what_the_unicode_pattern_finds(text: str) -> None:
    normalized = normalize_text(text)
    assert text_words(normalized) == _WORD.findall(normalized)
