from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

# Building blocks of the default patterns. The defaults are plain strings so that operators can
# read, copy and extend them in configuration; the fragments only keep them consistent.
# Patterns only spell ASCII apostrophes and hyphens and ignore URLs and @mentions because the
# matcher normalises and strips those before any pattern runs (see ShareRequestMatcher).

_YOU: Final = (
    r"(?:you(?:\s+(?:guys|all|two))?|u|ya|y'?all|someone|somebody|anyone|anybody"
    r"|everyone|everybody|people|folks|friends)"
)
# "pls", "plz", "plss", "please", "pleeease", "pleez"; never "pleased", "plus" or "plea".
_POLITE: Final = (
    r"(?:p+l+e*a*[sz]+e*|kindly|plox|pretty\s+please|por\s+favor|porfa(?:vor)?|porfis|pfv"
    r"|s'il\s+(?:te|vous)\s+pla[iî]t|svp|bitte|per\s+favore|tolong)"
)
# Sharing someone's thoughts, details or a recipe is a normal question, not a share request.
_SHARE_OK: Final = (
    r"(?!\s+(?:your|ur|yours|yourself|more|some|any|how|what|why|where|when|who|which|whether"
    r"|details?|info\w*|thoughts?|feedback|opinions?|views?|experiences?|insights?|tips?"
    r"|advice|ideas?|story|stories|price|prices|holders?|buyback|capital"
    r"|(?:a|the)\s+(?:link|source|details|recipe|name|location|address|photo|pic|screenshot))\b)"
)
_REPOST_OK: Final = r"(?!\s+(?:your|ur|yours|yourself)\b)"
_BOOST_OK: Final = (
    r"(?!\s+(?:your|ur|yours|yourself|the\s+economy|morale|sales|revenue|energy|confidence"
    r"|productivity|performance|immunity|metabolism|battery|speed|signal)\b)"
)
# "the RT", "your retweet", "no shares": a noun, not an ask. Fixed-width look-behinds only.
_ARTICLES: Final = ("the", "a", "an", "that", "this", "no", "any", "for")
_POSSESSIVES: Final = ("my", "your", "ur", "our", "his", "her", "their")
_NOT_A_NOUN: Final = "".join(rf"(?<!\b{word}\s)" for word in _ARTICLES + _POSSESSIVES)
_SPREAD: Final = r"spread\s+(?:the\s+(?:word|news)|this|it|my|our)\b"
# "RT'd" and "RTs" are a report or a noun, never an imperative.
_VERB_CORE: Final = (
    rf"(?:rt\b(?!'?(?:d|ed|s)\b)|re-?tweet\b|share\b{_SHARE_OK}|re-?post\b{_REPOST_OK}"
    rf"|(?:signal[\s-]?)?boost\b{_BOOST_OK}|amplify\b{_BOOST_OK})"
)
# The look-ahead on first letters spares the look-behinds at most word starts.
_VERB: Final = rf"\b(?=[rsba]){_NOT_A_NOUN}(?:{_VERB_CORE}|{_SPREAD})"
# Non-English verbs only count next to a polite word, where they cannot be anything else.
_VERB_INTL: Final = (
    rf"(?:{_VERB}|\b(?:retuit(?:e[ae]?[dn]?|ear)|compart(?:e|an|id|ir|ilh[ae]m?)"
    r"|partag(?:e|ez)|repost(?:ea|een))\b)"
)
_GERUND: Final = (
    rf"\b(?:rt'?ing\b|re-?tweeting\b|sharing\b{_SHARE_OK}|re-?posting\b{_REPOST_OK}"
    rf"|(?:signal[\s-]?)?boosting\b{_BOOST_OK}|amplifying\b{_BOOST_OK}"
    r"|spreading\s+(?:the\s+(?:word|news)|this|it|my|our)\b)"
)
_NOUN: Final = r"\b(?:rt|re-?tweet|share|re-?post|(?:signal[\s-]?)?boost)s?\b"
_FILLER: Final = (
    r"(?:do|also|just|go|and|n|kindly|quickly|quick|maybe|possibly|please|pls|plz|consider"
    r"|help(?:\s+(?:me|us))?(?:\s+(?:to|and))?|try\s+to|like|fav|follow(?:\s+(?:me|us))?"
    r"|rt|retweet|share|pretty\s+please)"
)
_FILLERS: Final = rf"(?:{_FILLER}[\s,&+/]+){{0,4}}"
_OBJECT: Final = (
    r"(?:this|that|these|those|it|'?em|them|me|us|my|our|mine|pinned"
    r"|the\s+(?:pinned|post|tweet|thread|video|link|pic|photo|article|song|petition|word|news)"
    r"|again|too|now|asap|everywhere|around|out|back|for\s+(?:me|us))\b"
)
_OBJECT_LEAD: Final = rf"(?:{_OBJECT}|(?:with|to|on|in|across|for)\b)"
# A clause starts at the beginning or after punctuation/emoji. A look-behind keeps this anchor
# zero-width, so runs of punctuation cannot make the search quadratic.
_CLAUSE_START: Final = r"(?:^|(?<=[^\w\s']))\s*"
_LEAD: Final = (
    rf"(?:(?:{_POLITE}|just|go|now|quick|quickly|and|also|so|hey|hi|hello|yo|ok|okay|lol|omg"
    r"|guys|folks|everyone|everybody|y'?all|friends|fam|people|someone|somebody)\b\W{0,6}){0,4}"
)
_AUX: Final = (
    r"(?:will|would|shall|should|can|could|might|may|must|did|do|does|just|already|also"
    r"|always|usually|often|sometimes|never|gladly|happily|definitely|def|totally|probably"
    r"|certainly|surely|really|literally|only|actually|even|gonna|wanna|want\s+to|have\s+to"
    r"|need\s+to|going\s+to|love\s+to|like\s+to|try\s+to|tried\s+to|plan\s+to|promise\s+to"
    r"|happy\s+to|glad\s+to|am|are|is|was|were|be|been|not|to|all|don't|dont|didn't|won't"
    r"|wouldn't|mind)"
)

DEFAULT_REQUEST_PATTERNS: Final[tuple[str, ...]] = (
    # "please RT", "pls like and retweet", "kindly share", "please help spread the word"
    rf"\b{_POLITE}\b\W{{0,6}}{_FILLERS}{_VERB_INTL}",
    # "RT pls", "repost this please", "share with your followers please"
    rf"{_VERB_INTL}(?:\s+{_OBJECT_LEAD}(?:\s+\S+){{0,4}}?)?\W{{0,6}}{_POLITE}\b",
    # "can you share this?", "could u retweet my thread", "any chance you could boost this"
    rf"\b(?:(?:can|could|would|will|wud|cud|cld|wld|cn)\s+{_YOU}"
    rf"|(?:any\s+chance|is\s+it\s+possible\s+(?:for|that))\s+{_YOU}"
    r"(?:\s+(?:can|could|would|will|to|might))?)"
    rf"\s+(?:be\s+(?:so\s+kind\s+as|kind\s+enough|willing|able)\s+to\s+)?{_FILLERS}{_VERB}",
    # "would you mind sharing this", "mind RTing this?", "please consider sharing"
    rf"\b(?:mind|(?:{_POLITE}|{_YOU})\s+(?:\w+\s+)?consider)\s+{_GERUND}",
    # "RT this!", "@bob Retweet my pinned", "spread the word!!", "everyone, share this"
    rf"{_CLAUSE_START}{_LEAD}(?:{_VERB_CORE}\s+{_OBJECT}|{_SPREAD})",
    # "you should RT this", "y'all need to share this"
    rf"\b{_YOU}\s+(?:should|must|gotta|need\s+to|have\s+to|got\s+to|better)\s+(?:go\s+)?{_VERB}",
    # "help spread the word", "help me by sharing"; not "this will help spread the word"
    r"(?<!\bwill\s)(?<!\bwould\s)(?<!\bcould\s)(?<!\bmight\s)(?<!\bcan\s)(?<!'ll\s)(?<!'d\s)"
    rf"\bhelp\s+(?:me\s+|us\s+|out\s+)?(?:(?:to|and|by)\s+)?(?:{_VERB}|{_GERUND})",
    # "RT if you agree", "share if u care", "RT to win", "retweet for a chance"
    rf"{_VERB}\s+(?:this\s+|it\s+)?(?:(?:if|when)\s+{_YOU}\b"
    r"|to\s+(?:win|enter|help|support|save)\b|for\s+(?:a\s+chance|a\s+follow|follow|more)\b)",
    # "retweet and follow", "like & RT", "follow + share", "RT4RT", "share for share"
    rf"{_VERB}\s*(?:and|&|\+|n|/)\s*(?:follow|like|fav|fave|comment|tag|reply|share|rt)\b",
    rf"\b(?:follow|like|fav|fave)\s*(?:and|&|\+|n|/)\s*{_VERB}",
    r"\b(?:rt|retweet|share|repost)\s*(?:4|for)\s*(?:rt|retweet|share|repost)\b",
    # "give my thread a RT", "give this a retweet", "drop a share", "dale RT"
    rf"\b(?:give|giving|gimme|giv|drop|leave|throw)\s+(?:\w+\s+){{0,3}}?an?\s+"
    rf"(?:quick\s+|little\s+|small\s+)?{_NOUN}",
    r"\b(?:dale|denle|d[aá]|den|dame|danos|d[eê])\s+(?:un\s+|uma?\s+)?(?:rt|retuit)\b",
    # "a RT would mean a lot", "your retweet would help", "RTs appreciated"
    rf"\b(?:an?|any|your|ur|some|every|each)\s+(?:quick\s+|little\s+|single\s+)?{_NOUN}"
    r"(?:\s+from\s+(?:you|u))?\s+(?:would|will|'d|could|wud|can|may|might)\s+"
    r"(?:really\s+|truly\s+|so\s+)?(?:mean|help|be|make|go|do)\b",
    rf"{_NOUN}\s+(?:(?:are|is|would\s+be|much|greatly|highly|very|always|really|so)\s+)*"
    r"(?:appreciated|welcome[d]?|helpful|needed)\b",
    # "share this with your followers", "RT to your timeline"
    rf"{_VERB}\s+(?:\w+\s+){{0,3}}?(?:with|to)\s+(?:all\s+)?(?:your|ur)\s+"
    r"(?:followers|friends|network|audience|timeline|tl|fans|family|circle|mutuals|people"
    r"|community)\b",
    # "don't forget to RT", "feel free to share"
    r"\b(?:don't\s+forget|dont\s+forget|do\s+not\s+forget|remember|be\s+sure|make\s+sure"
    rf"|feel\s+free|don't\s+hesitate|dont\s+hesitate|do\s+not\s+hesitate)\s+to\s+{_VERB}",
    # "need your RTs", "I need you to retweet"
    rf"\bneed\s+(?:{_YOU}\s+to\s+{_VERB}|(?:your|ur|some|more|a\s+few|all\s+the|an?)\s+{_NOUN})",
    # "I'd love a RT", "would appreciate it if you could share"
    r"(?:\bwould|'d|\bwud)\s+(?:really\s+|so\s+|totally\s+)?(?:love|appreciate|like)\s+"
    rf"(?:an?|any|some|your|ur)\s+(?:quick\s+|little\s+)?{_NOUN}",
    rf"\b(?:appreciate|love|grateful)\s+(?:it\s+)?if\s+{_YOU}\s+"
    rf"(?:(?:could|can|would|will|did|do)\s+)?{_FILLERS}{_VERB}",
)

DEFAULT_NOT_A_REQUEST_PATTERNS: Final[tuple[str, ...]] = (
    # Old-style quoting: "RT @user: text", anywhere; "RT @user text" when it opens the post.
    r"\brt\s*(?::\s*)?@\w+\s*:",
    r"^[\s.]*(?:@[\w.-]+[\s,:]+){0,10}rt\s*(?::\s*)?@\w+",
    # Look-alikes: the PCR test, Russia Today, Rotten Tomatoes, road numbers.
    r"\bq?rt[\s-]{0,2}q?pcr\b",
    r"\brt(?:\.com\b|\s+(?:news|america|uk|arabic|deutsch|france|documentary|score|rating)\b)",
    r"\brte?\.\s?\d+\b",
    # Gratitude for a share already made: "thanks for the RT", "thank you so much for sharing".
    r"\b(?:thanks?|thank\s+(?:you|u)|thx|thnx|thanx|tysm|tyvm|ty|cheers|grateful"
    r"|appreciated?|much\s+appreciated)(?:\s+\w+){0,3}?\s+for\s+"
    rf"(?:the\s+|all\s+(?:the\s+)?|your\s+|ur\s+|that\s+|this\s+|those\s+)?(?:{_NOUN}|{_GERUND})",
    rf"\b(?:thanks?|thx|ty|appreciated?|love)\s+(?:the|your|ur|all\s+(?:the|your)|that|those)"
    rf"\s+{_NOUN}",
    # Negation: "don't RT this", "please don't retweet", "no RTs please", "stop sharing".
    r"\b(?:don't|dont|do\s+not|doesn't|does\s+not|didn't|did\s+not|never|not|no\s+need\s+to"
    r"|won't|wont|will\s+not|wouldn't|would\s+not|shouldn't|should\s+not|can't|cannot"
    r"|can\s+not|couldn't|stop|quit|no)(?:\s+(?:ever|even|just|really|need\s+to|have\s+to"
    r"|want\s+to|wanna|gonna|bother(?:\s+to)?|please|pls|plz|to|be|being|keep|more|any|the"
    rf"|your|ur)){{0,3}}\s+(?:{_VERB}|{_GERUND}|{_NOUN})",
    # The sender reporting on their own or others' sharing: "I will RT this tonight",
    # "I'll share it later", "we'd love to share", "I don't mind sharing", "they RT everything".
    rf"\b(?:i|we|they|he|she|im|ive|ill|id)(?:'(?:ll|d|ve|m|re|s))?(?:\s+{_AUX}){{0,4}}\s+"
    rf"(?:(?:follow|like|fav)\s*(?:and|&|\+|n)\s*)?"
    rf"(?:{_VERB}|{_GERUND}|\b(?:give|gave|help|helped|helping)\b)",
)

_DEFAULT_REQUEST_SET: Final = frozenset(DEFAULT_REQUEST_PATTERNS)
# Every default request pattern needs one of these word starts; most texts have none, so this
# single scan settles them before the full pattern set runs.
_KEYWORDS: Final = re.compile(
    r"\b(?:rt|re-?tweet|re-?post|shar|boost|amplif|spread|retuit|compart|partag)",
    re.IGNORECASE,
)
# Bounded label counts keep a long dotted string from making this quadratic.
_URL: Final = re.compile(
    r"\b(?:https?://|www\.)\S+|\b(?:[a-z0-9-]{1,63}\.){1,6}[a-z]{2,24}/\S*", re.IGNORECASE
)
# Mastodon (@user@host) and Bluesky (@name.bsky.social) handles as well as X's @user.
_MENTION: Final = re.compile(r"(?<![\w@])@\w+(?:[.@-]\w+)*")
_HASHTAG_MARK: Final = re.compile(r"(?<!\w)#(?=\w)")
# Zero-width characters are a cheap way to split "R\u200bT" past a filter; typographic quotes
# and dashes would otherwise need every pattern to spell each variant.
_FOLD: Final = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u2032": "'",
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u200b": None,
        "\u200c": None,
        "\u200d": None,
        "\u2060": None,
        "\ufeff": None,
        "\u00ad": None,
    }
)


def _compile_all(patterns: Sequence[str], kind: str) -> tuple[re.Pattern[str], ...]:
    if isinstance(patterns, str):
        # A lone string is a Sequence[str] too; iterating it would compile single characters.
        raise TypeError(f"{kind} patterns must be a sequence of regexes, not a single string")
    compiled: list[re.Pattern[str]] = []
    for source in patterns:
        try:
            pattern = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"invalid {kind} pattern {source!r}: {exc}") from exc
        # Such a pattern would flag every text (request) or shred every text (not-a-request).
        if pattern.search("") is not None:
            raise ValueError(f"{kind} pattern {source!r} matches the empty string")
        compiled.append(pattern)
    return tuple(compiled)


class ShareRequestMatcher:
    """Decides whether a reply or mention asks its recipient to share the sender's content.

    "Share" covers retweet, RT, repost, boost, share and "spread the word". Matching is
    case-insensitive and runs on a cleaned copy of the text: NFKC-normalised (so fancy Unicode
    letters such as "𝗥𝗧" read as ASCII), typographic apostrophes straightened, zero-width
    characters dropped, URLs removed, every match of a not-a-request pattern removed, then
    @mentions and the '#' of hashtags removed, and the not-a-request patterns applied once more
    (so "thanks @bob for the RT" is caught too). The text is a request if any request pattern
    then matches.

    Not-a-request patterns see the text with mentions still in it, which is what lets them
    remove old-style quoting ("RT @user: ..."). When every request pattern is one of the
    defaults, a cheap keyword scan rejects most texts before any pattern runs; custom request
    patterns disable that shortcut, since their keywords are unknown.

    Patterns are compiled once, with re.IGNORECASE. A pattern that does not compile, or that
    matches the empty string, raises ValueError naming it.
    """

    __slots__ = ("_not_a_request", "_prefilter", "_request")

    def __init__(
        self,
        request_patterns: Sequence[str] = DEFAULT_REQUEST_PATTERNS,
        not_a_request_patterns: Sequence[str] = DEFAULT_NOT_A_REQUEST_PATTERNS,
    ) -> None:
        self._request = _compile_all(request_patterns, "request")
        self._not_a_request = _compile_all(not_a_request_patterns, "not-a-request")
        self._prefilter: re.Pattern[str] | None = (
            _KEYWORDS if _DEFAULT_REQUEST_SET.issuperset(request_patterns) else None
        )

    def asks_for_share(self, text: str) -> bool:
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text).translate(_FOLD)
        if self._prefilter is not None and self._prefilter.search(text) is None:
            return False
        text = _URL.sub(" ", text)
        text = self._remove_not_a_request(text)
        text = _MENTION.sub(" ", text)
        text = _HASHTAG_MARK.sub("", text)
        text = self._remove_not_a_request(text)
        return any(pattern.search(text) is not None for pattern in self._request)

    def _remove_not_a_request(self, text: str) -> str:
        # A space, not nothing, so the words on either side of a removal never fuse into one.
        for pattern in self._not_a_request:
            text = pattern.sub(" ", text)
        return text
