"""The reply as words, and matching words against phrase tables.

Every reader starts here: NFKC, accents and apostrophes folded, emoji that mean something
turned into words (a thumbs-up is yes), addresses and links left out ("stop@example.com" is
not STOP). A phrase table covers the whole message with its phrases and filler words, so
"yes please" is yes but "yes but not now" is not understood.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from text_to_num import alpha2digit

from bot.sms.parsing.meaning import Meaning, invalid

_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_EMOJI_WORDS = (
    # thumbs up, OK hand, check marks, "OK" button
    (re.compile("[\U0001f44d\U0001f44c\u2705\u2714\u2611\U0001f197]"), " yes "),
    # thumbs down, crosses, no-entry sign
    (re.compile("[\U0001f44e\u274c\u274e\u2716\U0001f6ab]"), " no "),
    (re.compile("\U0001f6d1"), " stop "),  # stop sign
    (re.compile("\U0001f64f"), " please "),  # folded hands
)
_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_EMAILISH = re.compile(r"\S*@\S*")
_APOSTROPHES = re.compile("['\u2018\u2019\u02bc`\u00b4]")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_LONG_RUN = re.compile(r"([a-z])\1{2,}")  # "yesss" -> "yes", "stooop" -> "stop" (runs of 3+)


def nfkc(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def fold(text: str) -> str:
    """NFKC, lowercase, accents stripped, apostrophes dropped ("don't" -> "dont")."""
    t = nfkc(text).lower()
    t = unicodedata.normalize("NFKD", t)
    t = "".join(c for c in t if not unicodedata.combining(c))
    return _APOSTROPHES.sub("", t)


def reply_words(text: str) -> list[str]:
    """The reply as lowercase ASCII words; emoji that mean something become words."""
    t = text
    for rx, word in _EMOJI_WORDS:
        t = rx.sub(word, t)
    t = _URL.sub(" ", t)
    t = _EMAILISH.sub(" ", t)  # "stop@example.com" is an address, not STOP
    t = _NON_WORD.sub(" ", fold(t))
    words = [_LONG_RUN.sub(r"\1", w) for w in t.split()]
    if len(words) > 1 and all(len(w) == 1 and w.isalpha() for w in words):
        words = ["".join(words)]  # "S T O P" -> "stop"
    return words


def phrase_set(*items: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(p.split()) for p in items)


def phrase_table(**groups: Iterable[str]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for label, items in groups.items():
        for p in items:
            out[tuple(p.split())] = label
    return out


def match_phrases(
    tokens: list[str], table: dict[tuple[str, ...], str], fillers: frozenset[str] | set[str]
) -> list[str] | None:
    """Cover the whole message with phrases of `table` (longest first) and filler words.

    Returns the labels found, or None when a word is neither a phrase nor a filler.
    """
    labels: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        for length in range(min(6, n - i), 0, -1):
            label = table.get(tuple(tokens[i : i + length]))
            if label is not None:
                labels.append(label)
                i += length
                break
        else:
            if tokens[i] not in fillers:
                return None
            i += 1
    return labels


def decide(labels: list[str] | None) -> Meaning | None:
    """One label -> that meaning; several different ones -> ambiguous; none -> None."""
    if not labels:
        return None
    distinct = set(labels)
    if len(distinct) > 1:
        return invalid("ambiguous")
    return Meaning(distinct.pop())


def words_to_digits(text: str, lang: str = "en") -> str:
    try:
        return alpha2digit(text, lang, threshold=0)
    except Exception:  # a number-word library must never turn a reply into a 500
        return text


_UN = re.compile(r"\b(un|una|uno)\b")
_UN_MARKED = re.compile(r"qqq(un|una|uno)\b")


def spanish_words_to_digits(text: str) -> str:
    """Spanish number words as digits ("cuarenta" -> "40"), but "un pago" is not "1 pago":
    the article stays a word (text2num reads it as one)."""
    marked = _UN.sub(lambda m: f"qqq{m.group(1)}", text)
    return _UN_MARKED.sub(r"\1", words_to_digits(marked, "es"))
