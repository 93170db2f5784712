from __future__ import annotations

import time

import pytest

from service.core.share_request import (
    DEFAULT_NOT_A_REQUEST_PATTERNS,
    DEFAULT_REQUEST_PATTERNS,
    ShareRequestMatcher,
)

MATCHER = ShareRequestMatcher()

REQUESTS: list[tuple[str, str]] = [
    ("please-rt", "please RT"),
    ("pls-retweet", "pls retweet"),
    ("plz-rt-pinned", "plz rt my pinned"),
    ("can-you-share", "can you share this?"),
    ("could-u-retweet", "could u retweet my thread"),
    ("mind-sharing", "would you mind sharing this"),
    ("rt-this", "RT this!"),
    ("mention-rt-this-pls", "@bob RT this pls"),
    ("help-spread", "help spread the word"),
    ("help-me-spread", "help me spread the word about my shop"),
    ("boost-pls", "boost pls"),
    ("signal-boost-please", "signal boost please"),
    ("please-repost", "please repost"),
    ("repost-this-please", "repost this please"),
    ("give-thread-a-rt", "give my thread a RT"),
    ("mind-giving-a-retweet", "would you mind giving my post a retweet?"),
    ("give-this-a-retweet-emoji", "give this a retweet 🙏"),
    ("a-rt-would-mean", "a RT would mean a lot"),
    ("rt-if-you-agree", "RT if you agree"),
    ("retweet-and-follow", "retweet and follow for a follow back"),
    ("share-with-followers", "share with your followers please"),
    ("mind-rting", "mind RTing this?"),
    ("title-case", "Please Retweet My New Video"),
    ("rt-pls", "RT pls"),
    ("retweet-please", "retweet please"),
    ("can-you-boost", "can you boost this"),
    ("spread-the-word", "spread the word!!"),
    ("pls-share", "pls share"),
    ("kindly-retweet", "kindly retweet"),
    ("all-caps", "PLEASE RT!!!"),
    ("pleeease-emoji", "pleeease retweet 🙏🙏"),
    ("url-after", "Pls RT 🙏 https://t.co/abc123"),
    ("url-before", "check this out https://example.com/post/1 and please share"),
    ("bare-domain-url", "can you share my new song? sptfy.com/x7Yq"),
    ("two-mentions", "@alice @carol could you please RT my pinned tweet?"),
    ("mention-mid-sentence", "hey @bob, can you share my new song?"),
    ("mention-inside-request", "please rt @alice's post"),
    ("bluesky-handle", "@bob.bsky.social pls repost"),
    ("mastodon-handle", "@bob@mastodon.social please boost this"),
    ("math-bold-letters", "𝗣𝗹𝗲𝗮𝘀𝗲 𝗥𝗧"),
    ("fullwidth-letters", "ＲＴ ｐｌｓ"),
    ("zero-width-space", "R\u200bT this please"),
    ("curly-apostrophe", "don\u2019t forget to retweet!"),
    ("so-kind-as", "would you be so kind as to retweet this?"),
    ("any-chance", "any chance you could boost my post?"),
    ("yall", "y'all RT this"),
    ("everyone-share", "everyone share this!"),
    ("you-should", "you should RT this"),
    ("rt-to-win", "RT to win a free iPhone"),
    ("like-and-retweet", "like and retweet please"),
    ("like-amp-rt", "Like & RT 🔁"),
    ("rt4rt", "RT4RT"),
    ("rt-for-rt", "follow for follow, rt for rt"),
    ("feel-free", "feel free to share this with your followers"),
    ("rts-appreciated", "RTs appreciated 🙏"),
    ("a-share-would-help", "a share would really help my small business"),
    ("retweet-from-you", "a retweet from you would mean a lot"),
    ("love-a-retweet", "I'd love a retweet on this"),
    ("appreciate-if", "I'd appreciate it if you could share this"),
    ("need-your-retweets", "we need your retweets to reach 1k"),
    ("help-by-sharing", "help us by sharing this petition"),
    ("help-boost", "pls help boost this fundraiser"),
    ("share-if-you-care", "share this if you care about animals"),
    ("consider-sharing", "please consider sharing my fundraiser"),
    ("can-someone", "Can someone retweet this?"),
    ("re-tweet-hyphen", "could you re-tweet this?"),
    ("amplify", "plz amplify this thread"),
    ("hashtag-rt", "#RT this pls"),
    ("gimme-a-rt", "gimme a RT 😎"),
    ("thanks-then-ask", "thanks for following! please RT my pinned"),
    ("spanish-dale-rt", "dale RT porfa"),
    ("spanish-rt-por-favor", "RT por favor"),
]

NOT_REQUESTS: list[tuple[str, str]] = [
    ("old-style-quote", "RT @user: big news today"),
    ("old-style-quote-lower", "rt @bob: lol"),
    ("past-retweeted", "I retweeted your post"),
    ("just-retweeted", "just retweeted this"),
    ("thanks-for-rt", "thanks for the RT!"),
    ("thanks-for-sharing", "thanks for sharing"),
    ("will-share-later", "I'll share it later"),
    ("will-rt-tonight", "I will RT this tonight"),
    ("we-shared", "we shared your article"),
    ("dont-rt", "don't RT this"),
    ("please-dont-retweet", "please don't retweet"),
    ("art", "art is great"),
    ("smart-start", "my smart start"),
    ("rt-pcr", "RT-PCR test came back negative"),
    ("rt-pcr-lower", "rt-pcr results"),
    ("party", "the party was great"),
    ("love-post", "I love this post"),
    ("reposted", "she reposted it yesterday"),
    ("who-shared", "who shared this?"),
    ("shared-by", "shared by many"),
    ("boosted", "I boosted your post"),
    ("empty", ""),
    ("rtttt", "rtttt"),
    ("artist", "support the artist"),
    ("quote-mid-text", "Interesting. RT @bob: Some thought"),
    ("quote-with-url", "RT @CNN: breaking news https://t.co/xyz"),
    ("quote-after-mention", "@alice RT @bob great thread"),
    ("thanks-mention-rt", "thanks @bob for the RT!"),
    ("thank-you-sharing-emoji", "thank you so much for sharing this 💕"),
    ("appreciate-retweet", "appreciate the retweet!"),
    ("curly-ill-share", "I\u2019ll share it tomorrow"),
    ("no-rts", "no RTs please, this is private"),
    ("do-not-share", "please do not share this"),
    ("stop-retweeting", "stop retweeting bots"),
    ("share-thoughts", "can you share your thoughts on this?"),
    ("share-details", "could you share more details?"),
    ("share-recipe", "please share the recipe!"),
    ("dont-mind-sharing", "I don't mind sharing my notes"),
    ("wed-love-to-share", "we'd love to share your story"),
    ("share-price", "the share price dropped 10%"),
    ("market-share", "market share is growing"),
    ("will-help-spread", "this will help spread the word"),
    ("boost-immune", "please boost your immune system"),
    ("qrt-pcr", "covid qRT-PCR positive"),
    ("non-breaking-hyphen-pcr", "RT\u2011PCR negative"),
    ("rt-news", "RT News reported it"),
    ("route", "take Rt. 66 west"),
    ("rtd", "I RT'd it yesterday"),
    ("rts-noun", "your RTs are hilarious"),
    ("retweets-down", "retweets and likes are down this week"),
    ("retweet-counts", "retweet counts are broken, please fix"),
    ("share-if-i-could", "I'd share this if I could"),
    ("shed-retweet", "she said she'd retweet it"),
    ("keyword-only-in-url", "Great party! https://share.example.com/p/123"),
    ("keyword-only-in-mention", "@share_bot hello"),
    ("hashtag-compound", "#ShareTheLove today"),
    ("retweeted-emoji", "retweeted! 🙏"),
    ("boost-mobile", "Boost Mobile has the worst service"),
    ("cant-wait-to-share", "I can't wait to share this with my team"),
    ("the-rts-were-nice", "the RTs were nice, please follow back"),
    ("math-bold-art", "smart 𝗮𝗿𝘁 start"),
    ("please-follow", "please follow me"),
    ("sharing-thoughts", "sharing my thoughts on the game"),
    ("peanut-spread", "peanut butter spread please"),
    ("we-spread", "we spread the word last year"),
]


@pytest.mark.parametrize("text", [t for _, t in REQUESTS], ids=[i for i, _ in REQUESTS])
def test_requests_match(text: str) -> None:
    assert MATCHER.asks_for_share(text)


@pytest.mark.parametrize("text", [t for _, t in NOT_REQUESTS], ids=[i for i, _ in NOT_REQUESTS])
def test_non_requests_do_not_match(text: str) -> None:
    assert not MATCHER.asks_for_share(text)


def test_case_ids_are_unique() -> None:
    ids = [i for i, _ in REQUESTS] + [i for i, _ in NOT_REQUESTS]
    assert len(ids) == len(set(ids))


def test_defaults_are_used_when_no_patterns_given() -> None:
    explicit = ShareRequestMatcher(DEFAULT_REQUEST_PATTERNS, DEFAULT_NOT_A_REQUEST_PATTERNS)
    for _, text in REQUESTS + NOT_REQUESTS:
        assert explicit.asks_for_share(text) == MATCHER.asks_for_share(text)


def test_custom_request_patterns_replace_defaults() -> None:
    matcher = ShareRequestMatcher(request_patterns=[r"\bcomparte\b", r"\bteilen\b"])
    assert matcher.asks_for_share("¡Comparte esto!")
    assert matcher.asks_for_share("Bitte TEILEN")
    # The defaults are gone, and the keyword shortcut must not hide the custom words.
    assert not matcher.asks_for_share("please RT")


def test_custom_not_a_request_patterns_are_removed_first() -> None:
    matcher = ShareRequestMatcher(not_a_request_patterns=[r"\bplease rt the bus\b"])
    assert not matcher.asks_for_share("Please RT the bus is late")
    assert matcher.asks_for_share("please RT")
    # Without the default quote removal, an old-style quote followed by "pls" reads as an ask.
    assert not MATCHER.asks_for_share("RT @user: pls read")
    assert matcher.asks_for_share("RT @user: pls read")


def test_request_patterns_run_after_urls_and_mentions_are_removed() -> None:
    matcher = ShareRequestMatcher(request_patterns=[r"@\w+", r"example\.com"])
    assert not matcher.asks_for_share("hi @bob")
    assert not matcher.asks_for_share("see https://example.com/x")


def test_no_patterns_never_match() -> None:
    matcher = ShareRequestMatcher(request_patterns=())
    assert not matcher.asks_for_share("please RT")


@pytest.mark.parametrize("kind", ["request_patterns", "not_a_request_patterns"])
def test_invalid_regex_raises_value_error_naming_it(kind: str) -> None:
    bad = r"please (rt"
    with pytest.raises(ValueError, match=r"please \(rt"):
        ShareRequestMatcher(**{kind: [r"\bok\b", bad]})


@pytest.mark.parametrize("pattern", ["", r"(?:rt)?", "x*"])
def test_pattern_matching_empty_string_is_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="empty string"):
        ShareRequestMatcher(request_patterns=[pattern])
    with pytest.raises(ValueError, match="empty string"):
        ShareRequestMatcher(not_a_request_patterns=[pattern])


def test_single_string_instead_of_sequence_is_rejected() -> None:
    with pytest.raises(TypeError):
        ShareRequestMatcher(request_patterns="please rt")


def test_default_patterns_compile_case_insensitively() -> None:
    assert all(isinstance(p, str) and p for p in DEFAULT_REQUEST_PATTERNS)
    assert all(isinstance(p, str) and p for p in DEFAULT_NOT_A_REQUEST_PATTERNS)
    assert MATCHER.asks_for_share("pLeAsE rEtWeEt")


@pytest.mark.parametrize(
    "text",
    [
        "!" * 60_000 + " rt",
        "rt" + " " * 60_000 + "pls",
        "rt" + "\t" * 60_000 + "@x",
        "pls! " * 12_000,
        "i will " * 8_000 + "rt",
        "a." * 30_000 + "rt",
    ],
    ids=["punctuation-run", "space-run", "tab-run-quote", "polite-run", "aux-run", "dotted-run"],
)
def test_pathological_input_stays_linear(text: str) -> None:
    # Generous bound: quadratic backtracking on these inputs takes many seconds.
    start = time.perf_counter()
    MATCHER.asks_for_share(text)
    assert time.perf_counter() - start < 2.0
