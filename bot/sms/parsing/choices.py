"""Choosing: an option from a numbered menu ("2", "the second one", "skip"), and the change
a customer asks of a signed plan (the plan step: move, skip, extra).

Choices worth knowing (each is pinned by tests/test_parsing.py):

* The plan step reads a change to a signed plan in words: ``plan_move`` ("move my payment",
  "change the date"), ``plan_skip`` ("skip this month"), ``plan_extra`` ("can I pay more";
  with the amount in cents as its value when one comes with it, "pay $50 extra"); two of
  them at once are ``ambiguous``; anything else is read as yes/no.
"""

from __future__ import annotations

import re

from bot.sms.parsing.amounts import parse_amount
from bot.sms.parsing.answers import only_no, yes_no
from bot.sms.parsing.meaning import Meaning, invalid
from bot.sms.parsing.words import match_phrases, phrase_table, reply_words

# --------------------------------------------------------------------------------------
# Menu
# --------------------------------------------------------------------------------------

_ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "sixth": 6, "6th": 6, "seventh": 7, "7th": 7, "eighth": 8, "8th": 8,
    "ninth": 9, "9th": 9, "tenth": 10, "10th": 10,
    "last": -1, "ultimo": -1, "ultima": -1,
    "primero": 1, "primera": 1, "primer": 1, "segundo": 2, "segunda": 2, "tercero": 3,
    "tercera": 3, "tercer": 3, "cuarto": 4, "cuarta": 4, "quinto": 5, "quinta": 5,
}
_CARDINALS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
}
_MENU_FILLERS = frozenset(
    {
        "the", "option", "options", "opt", "number", "num", "choice", "offer", "i", "ill", "will",
        "take", "want", "wanna", "choose", "pick", "go", "with", "please", "pls", "plz", "thanks",
        "thank", "you", "lets", "do", "id", "like", "select", "reply", "a", "an", "for", "me",
        "is", "it", "its", "that", "ok", "okay", "yes", "y", "sure", "would", "to", "opcion",
        "numero", "el", "la", "quiero", "de", "one", "or", "and", "o",
    }
)
_SKIP_TABLE = phrase_table(
    skip=(
        "skip", "skip it", "skip this", "skip offers", "skip the offers", "skip offer", "none",
        "none of them", "none of those", "neither", "neither one", "neither of them",
        "no offer", "no offers", "pass", "saltar", "ninguno", "ninguna",
    )
)


def parse_menu(text: str, menu_size: int, skip_option: int | None) -> Meaning:
    tokens = reply_words(text)
    if only_no(tokens):
        return Meaning("no")
    labels = match_phrases(tokens, _SKIP_TABLE, _MENU_FILLERS | set(_ORDINALS) | set(_CARDINALS)
                    | {t for t in tokens if t.isdigit()})
    if labels is None:
        return invalid("no_such_option")
    has_ordinal = any(t in _ORDINALS for t in tokens)
    values: set[int] = set()
    for tok in tokens:
        if tok.isdigit() and len(tok) <= 4:
            values.add(int(tok))
        elif tok.isdigit():
            values.add(10_000)  # some long number: not an option
        elif tok in _ORDINALS:
            values.add(menu_size if _ORDINALS[tok] == -1 else _ORDINALS[tok])
        elif tok in _CARDINALS and not (tok in {"one", "una", "uno"} and has_ordinal):
            values.add(_CARDINALS[tok])
    if "skip" in labels:
        if values or skip_option is None:
            return invalid("ambiguous" if values else "no_such_option")
        return Meaning("choice", skip_option)
    if len(values) != 1:
        return invalid("ambiguous" if values else "no_such_option")
    value = values.pop()
    if 1 <= value <= menu_size or value == skip_option:
        return Meaning("choice", value)
    return invalid("no_such_option")


# --------------------------------------------------------------------------------------
# Changing a plan (the plan step: MOVE, SKIP, EXTRA and their natural phrasings)
# --------------------------------------------------------------------------------------

_PLAN_MOVE = re.compile(
    r"\b(?:"
    r"move|moving|reschedule|postpone|delay|push (?:it |back|my|the)|"
    r"change (?:the |my |of )?(?:payment |next |due )*(?:date|day)|"
    r"(?:different|another|new|later) (?:date|day)|"
    r"cambiar (?:la )?fecha|mover"
    r")\b"
)
_PLAN_SKIP = re.compile(
    r"\b(?:"
    r"skip|skipping|skip (?:this|next|a|one) (?:month|payment|week)|"
    r"miss (?:this|next|a|one) (?:month|payment)|saltar"
    r")\b"
)
_PLAN_EXTRA = re.compile(
    r"\b(?:"
    r"extra|additional|pay (?:some |a bit |a little )?more|more now|pay ahead|pay down|"
    r"pay (?:it )?off (?:early|sooner|now)|pay early|"
    r"pagar mas|abono|adelantar"
    r")\b"
)


def parse_plan(text: str) -> Meaning:
    joined = " ".join(reply_words(text))
    found = {
        kind
        for kind, rx in (
            ("plan_move", _PLAN_MOVE),
            ("plan_skip", _PLAN_SKIP),
            ("plan_extra", _PLAN_EXTRA),
        )
        if rx.search(joined)
    }
    if len(found) > 1:
        return invalid("ambiguous")
    if found == {"plan_extra"}:
        amount = parse_amount(text)  # "pay 50 extra": the amount comes with the request
        return Meaning("plan_extra", amount.value if amount.kind == "amount" else None)
    if found:
        return Meaning(found.pop())
    return yes_no(reply_words(text))
