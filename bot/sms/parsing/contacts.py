"""Who the customer is: an email address (contact step), an account ID, and a one-time code
or knowledge answer (last 4 of the SSN and the date of birth).

Choices worth knowing (each is pinned by tests/test_parsing.py):

* An account ID needs a digit (so "hello" or "nope" never burns a verification try), and
  an SSN-shaped reply (123-45-6789) is refused with ``looks_like_ssn``.
"""

from __future__ import annotations

import datetime
import re

from bot.sms.parsing.answers import YES_NO, YN_FILLERS
from bot.sms.parsing.dates import MONTH_RX, MONTHS, ORD
from bot.sms.parsing.meaning import Meaning, invalid
from bot.sms.parsing.words import (
    decide,
    fold,
    match_phrases,
    nfkc,
    phrase_table,
    reply_words,
)

# --------------------------------------------------------------------------------------
# Email (contact step)
# --------------------------------------------------------------------------------------

_CONTACT_YES = (
    "thats me", "thats my email", "that is my email", "its my email", "still good", "same",
    "same one", "keep it", "keep", "use that", "use that one", "use it", "its correct",
    "it is correct", "thats it", "that works", "works", "still the same", "yes thats it",
)
_CONTACT_NO = (
    "not my email", "thats not my email", "that is not my email", "new email",
    "different email", "update", "update it", "change email", "change my email",
    "wrong email", "thats old", "old email",
)
_CONTACT_TABLE = {**YES_NO, **phrase_table(yes=_CONTACT_YES, no=_CONTACT_NO)}
_CONTACT_FILLERS = YN_FILLERS | {"is", "the", "email", "address", "one", "that"}


_EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\]{},;:\"]*@[^\s<>()\[\]{},;:\"]*")
_EMAIL_VALID = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_DOMAIN_WITHOUT_AT = re.compile(
    r"\b[a-z0-9._%+-]+\.(?:com|net|org|edu|gov|us|io|co|info|biz|me)\b", re.IGNORECASE
)


def parse_contact(text: str) -> Meaning:
    raw = nfkc(text)
    if "@" in raw:
        valid: set[str] = set()
        for m in _EMAIL_CANDIDATE.finditer(raw):
            cand = m.group(0).lower().strip(".!?'`")
            cand = cand.removeprefix("mailto:")
            local, _, _domain = cand.partition("@")
            if len(cand) <= 254 and len(local) <= 64 and _EMAIL_VALID.fullmatch(cand):
                valid.add(cand)
        if len(valid) == 1:
            return Meaning("email", valid.pop())
        if len(valid) > 1:
            return invalid("ambiguous")
        return invalid("bad_email")
    tokens = reply_words(raw)
    decided = decide(match_phrases(tokens, _CONTACT_TABLE, _CONTACT_FILLERS))
    if decided is not None:
        return decided
    if _DOMAIN_WITHOUT_AT.search(raw):
        return invalid("bad_email")
    return invalid("not_understood")


# --------------------------------------------------------------------------------------
# Account ID, one-time code or knowledge answer
# --------------------------------------------------------------------------------------

_ACCOUNT_PREFIX = re.compile(
    r"^(?:(?:my|the|it\s*is|its|it's)\s+)?(?:account|acct|a/c|cuenta)\b"
    r"(?:\s*(?:id|number|num|no\.?|#|numero)\b)?\s*(?:(?:is|es)\b|[:=#])?\s*"
    r"|^(?:it\s*is|its|it's|id|id\s*is)(?:\s+|\s*:\s*)",
    re.IGNORECASE,
)
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_SSN_SHAPE = re.compile(r"[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}")


def parse_account_id(text: str) -> Meaning:
    s = nfkc(text).strip()
    s = _ACCOUNT_PREFIX.sub("", s).strip()
    s = s.strip(" \t\r\n.,;:!?\"'()[]").lstrip("#").strip()
    if _SSN_SHAPE.fullmatch(s):
        return invalid("looks_like_ssn")  # never look an account up by (or echo) an SSN
    if 3 <= len(s) <= 40 and _ACCOUNT_ID.fullmatch(s) and any(c.isdigit() for c in s):
        return Meaning("text", s)
    return invalid("not_understood")


_CODE_LABELS = re.compile(
    r"\b(?:last\s*(?:4|four)(?:\s*(?:of\s*)?(?:my\s*)?(?:ssn|social(?:\s*security)?))?|"
    r"ssn|social|dob|d\.o\.b\.?|date\s+of\s+birth|birthday|birth\s*date|born(?:\s+on)?|"
    r"my|the|code|codes|is|its|it|pin|otp|verification|one\s*time|passcode|number|here|"
    r"ok|okay|please|thanks|and|codigo|es|mi|fecha\s+de\s+nacimiento|nacimiento)\b"
)
_DOB_NUMERIC = re.compile(
    r"(?<![0-9])([0-9]{1,2})[/.-]([0-9]{1,2})[/.-]([0-9]{4}|[0-9]{2})(?![0-9])"
)
_DOB_ISO = re.compile(r"(?<![0-9])([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})(?![0-9])")
_DOB_MONTH_DAY = re.compile(rf"\b({MONTH_RX})\.?\s+([0-9]{{1,2}}){ORD}\s+([0-9]{{4}})\b")
_DOB_DAY_MONTH = re.compile(
    rf"\b([0-9]{{1,2}}){ORD}\s+(?:of\s+|de\s+)?({MONTH_RX})\.?\s+(?:de\s+)?([0-9]{{4}})\b"
)


def _dob(year: int, month: int, day: int, today: datetime.date) -> datetime.date | None:
    if year < 100:
        year += 2000 if 2000 + year <= today.year else 1900
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return None
    return born if 1900 <= year and born < today else None


def parse_code(text: str, today: datetime.date) -> Meaning:
    t = fold(text)
    t = re.sub(r"[,;!?()\"]", " ", t)
    dobs: list[datetime.date | None] = []

    def take(rx: re.Pattern[str], resolve) -> None:
        nonlocal t

        def repl(m: re.Match[str]) -> str:
            dobs.append(resolve(m))
            return " "

        t = rx.sub(repl, t)

    take(_DOB_ISO, lambda m: _dob(int(m[1]), int(m[2]), int(m[3]), today))
    take(_DOB_NUMERIC, lambda m: _dob(int(m[3]), int(m[1]), int(m[2]), today))
    take(_DOB_MONTH_DAY, lambda m: _dob(int(m[3]), MONTHS[m[1]], int(m[2]), today))
    take(_DOB_DAY_MONTH, lambda m: _dob(int(m[3]), MONTHS[m[2]], int(m[1]), today))
    rest = _CODE_LABELS.sub(" ", t)
    rest = re.sub(r"[:=#.]", " ", rest).strip()

    if dobs:
        groups = re.findall(r"[0-9]+", rest)
        leftovers = re.sub(r"[0-9\s-]", "", rest)
        if len(dobs) != 1 or dobs[0] is None or leftovers or len(groups) != 1:
            return invalid("not_understood")
        if len(groups[0]) != 4:
            return invalid("not_understood")
        return Meaning("text", f"{groups[0]}|{dobs[0].isoformat()}")

    if re.fullmatch(r"[0-9]+(?:[ -]+[0-9]+)*", rest):
        digits = re.sub(r"[^0-9]", "", rest)
        if 4 <= len(digits) <= 8:
            return Meaning("text", digits)
    return invalid("not_understood")
