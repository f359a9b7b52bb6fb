"""GSM-7 text rules for outbound SMS (GSM 03.38).

One character outside the GSM-7 alphabet (a curly quote, an emoji, a bullet)
turns the whole message into UCS-2: 70 characters a segment instead of 160.
PayBot replies stay GSM-7; ``to_gsm7`` cleans text that comes from templates,
names or pasted legal copy, and ``segment_count`` says what a message costs.
"""

from __future__ import annotations

import unicodedata

# GSM 03.38 default alphabet (the basic character set), 128 positions less ESC (0x1B).
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

# Basic-set extension table: each costs two septets (ESC + the character).
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_CHARS: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE = 160  # septets in a one-part message
GSM7_PART = 153  # septets per part of a concatenated message (7 go to the UDH)
UCS2_SINGLE = 70  # UTF-16 code units in a one-part message
UCS2_PART = 67  # UTF-16 code units per part of a concatenated message

# Common characters outside GSM-7 and the GSM-7 text that stands for them.
_REPLACEMENTS: dict[str, str] = {
    # single quotes, apostrophes, primes, accents used as quotes
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark / apostrophe
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
    "\u2032": "'",  # prime
    "\u2039": "'",  # single left-pointing angle quotation mark
    "\u203a": "'",  # single right-pointing angle quotation mark
    "\u00b4": "'",  # acute accent
    "`": "'",  # grave accent (not in GSM-7)
    "\u02bc": "'",  # modifier letter apostrophe
    # double quotes
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # left-pointing double angle quotation mark
    "\u00bb": '"',  # right-pointing double angle quotation mark
    # dashes and hyphens
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2043": "-",  # hyphen bullet
    # bullets
    "\u2022": "-",  # bullet
    "\u2023": "-",  # triangular bullet
    "\u25e6": "-",  # white bullet
    "\u2219": "-",  # bullet operator
    "\u00b7": "-",  # middle dot
    "\u25aa": "-",  # black small square
    "\u25cf": "-",  # black circle
    # ellipsis
    "\u2026": "...",
    # spaces
    "\u00a0": " ",  # no-break space
    "\u2000": " ",
    "\u2001": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u2004": " ",
    "\u2005": " ",
    "\u2006": " ",
    "\u2007": " ",
    "\u2008": " ",
    "\u2009": " ",  # thin space
    "\u200a": " ",  # hair space
    "\u202f": " ",  # narrow no-break space
    "\u205f": " ",  # medium mathematical space
    "\u3000": " ",  # ideographic space
    "\t": " ",
    # invisible characters: dropped
    "\u00ad": "",  # soft hyphen
    "\u200b": "",  # zero width space
    "\u200c": "",  # zero width non-joiner
    "\u200d": "",  # zero width joiner
    "\u2060": "",  # word joiner
    "\ufeff": "",  # zero width no-break space / BOM
    "\ufe0f": "",  # variation selector-16 (emoji presentation)
    # line separators
    "\u2028": "\n",
    "\u2029": "\n",
    "\u0085": "\n",
    "\u000b": "\n",
    # symbols people paste
    "\u2122": "TM",
    "\u00a9": "(c)",
    "\u00ae": "(R)",
    "\u02c6": "^",
    "\u02dc": "~",
    "\u00d7": "x",  # multiplication sign
    "\u00f7": "/",  # division sign
    "\u2044": "/",  # fraction slash
    "\u00a2": "c",  # cent sign
}


def has_control_characters(text: str) -> bool:
    """A NUL, an escape, a bell...: no name, note, search or message carries one (PostgreSQL
    refuses NUL in text; a carrier would pass the rest on). Line breaks and tabs are text."""
    return any(unicodedata.category(c) == "Cc" and c not in "\n\r\t" for c in text)


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 basic set or its extension."""
    return all(ch in GSM7_CHARS for ch in text)


def non_gsm7_chars(text: str) -> list[str]:
    """The distinct characters of ``text`` outside GSM-7, in order of first appearance."""
    seen: dict[str, None] = {}
    for ch in text:
        if ch not in GSM7_CHARS:
            seen.setdefault(ch, None)
    return list(seen)


def encoding(text: str) -> str:
    """``"GSM-7"`` or ``"UCS-2"``: the encoding a carrier uses for ``text``."""
    return "GSM-7" if is_gsm7(text) else "UCS-2"


def septet_count(text: str) -> int:
    """Septets ``text`` takes in GSM-7 (extension characters take two).

    Raises ``ValueError`` when ``text`` is not GSM-7.
    """
    total = 0
    for ch in text:
        if ch in GSM7_BASIC:
            total += 1
        elif ch in GSM7_EXTENSION:
            total += 2
        else:
            raise ValueError(f"not a GSM-7 character: {ch!r}")
    return total


def _pack(units: list[int], single: int, part: int) -> int:
    """Parts needed for characters of the given widths; a character never straddles parts."""
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for width in units:
        if used + width > part:
            parts += 1
            used = 0
        used += width
    return parts


def segment_count(text: str) -> int:
    """Number of SMS segments ``text`` is sent as.

    GSM-7: 160 septets in one part, otherwise 153 a part; extension characters
    count two and their escape pair is never split between parts.
    UCS-2: 70 UTF-16 code units in one part, otherwise 67 a part; a surrogate pair
    (most emoji) is never split. An empty text counts as one segment.
    """
    if is_gsm7(text):
        units = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        return _pack(units, GSM7_SINGLE, GSM7_PART)
    units = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
    return _pack(units, UCS2_SINGLE, UCS2_PART)


def _fallback(ch: str) -> str | None:
    """GSM-7 text for ``ch`` from its compatibility decomposition (á -> a, ﬁ -> fi), or None."""
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    if base and base != ch and all(c in GSM7_CHARS for c in base):
        return base
    return None


def to_gsm7(text: str, replacement: str | None = "?") -> str:
    """Rewrite ``text`` into the GSM-7 alphabet.

    Curly quotes become straight ones, dashes and bullets ``-``, the ellipsis ``...``,
    unusual spaces a plain space, invisible characters vanish, and accented letters
    outside GSM-7 lose their accent (``á`` -> ``a``; ``é``, ``ñ``, ``ü`` are GSM-7 and stay).
    Anything else (emoji, other scripts) becomes ``replacement``; with
    ``replacement=None`` it is kept, and the result may then not be GSM-7.
    """
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in GSM7_CHARS:
            out.append(ch)
            continue
        mapped = _REPLACEMENTS.get(ch)
        if mapped is None:
            mapped = _fallback(ch)
        if mapped is None:
            if unicodedata.category(ch) in ("Mn", "Me", "Cf"):
                mapped = ""  # a stray combining mark or format character
            else:
                mapped = ch if replacement is None else replacement
        out.append(mapped)
    return "".join(out)
