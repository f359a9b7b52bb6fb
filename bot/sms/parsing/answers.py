"""Yes, no and agree: the confirm, agree and any steps, and the way back in every step.

Choices worth knowing (each is pinned by tests/test_parsing.py):

* "no" is ``no`` in every step where it is not data, so the engine can go back (the
  design makes NO or MENU the way back in a flow). In confirm, agree, contact and any,
  "not now", "wait", "later" are ``no`` too; in amount, date and menu only a plain no or
  "go back" is (there "not now" re-prompts: the step wants a date or an amount).
* "pay" counts as yes ("Reply PAY to pay by text").
"""

from __future__ import annotations

import re

from bot.sms.parsing.meaning import Meaning, invalid
from bot.sms.parsing.words import decide, match_phrases, phrase_table, reply_words

_YES = (
    "y", "yes", "ye", "yess", "yep", "yeps", "yup", "yeah", "yea", "yah", "ya", "yas", "ok",
    "okay", "okey", "okie", "oki", "k", "kk", "o k", "sure", "sure thing", "of course", "ofc",
    "absolutely", "definitely", "certainly", "confirm", "confirmed", "i confirm", "correct",
    "right", "thats right", "that is right", "thats correct", "that is correct",
    "affirmative", "go ahead", "go for it", "do it", "lets do it", "please do", "proceed",
    "sounds good", "looks good", "all good", "good", "perfect", "fine", "alright", "all right",
    "approved", "approve", "i approve", "i do", "yes i do", "pay", "pay it", "pay now",
    "si", "claro", "dale", "vale", "esta bien", "bueno", "correcto", "perfecto", "de acuerdo",
    "confirmo", "okey dokey",
)
_NO = (
    "n", "no", "nop", "nope", "nah", "naw", "no thanks", "no thank you", "not now", "not yet",
    "not right now", "not today", "not really", "wait", "hold on", "hold", "hang on", "later",
    "maybe later", "back", "go back", "change", "change it", "wrong", "incorrect",
    "not correct", "not right", "thats wrong", "that is wrong", "thats not right",
    "that is not right", "thats not correct", "that is not correct", "never mind",
    "nevermind", "nvm", "i dont", "dont", "i do not", "do not", "no way", "negative",
    "ahora no", "todavia no", "aun no", "espera", "mas tarde", "cambiar",
)
YN_FILLERS = frozenset(
    {
        "please", "pls", "plz", "thanks", "thank", "you", "thx", "ty", "so", "just", "then",
        "lol", "and", "sir", "maam", "por", "favor", "gracias", "now", "oh", "um", "uh", "hmm",
        "well",
    }
)
YES_NO = phrase_table(yes=_YES, no=_NO)

_AGREE = (
    "agree", "agreed", "i agree", "accept", "accepted", "i accept", "consent", "i consent",
    "authorize", "authorized", "i authorize", "sign", "signed", "i sign", "sign it",
    "yes i agree", "yes i accept", "acepto", "estoy de acuerdo", "autorizo",
)
_DISAGREE = (
    "disagree", "i disagree", "dont agree", "do not agree", "i dont agree", "i do not agree",
    "not agree", "decline", "i decline", "refuse", "i refuse", "dont accept",
    "do not accept", "i dont accept", "i do not accept", "no acepto", "no estoy de acuerdo",
)
_AGREE_TABLE = {
    **phrase_table(agree=_YES, no=_NO),
    **phrase_table(agree=_AGREE, no=_DISAGREE),
}
_AGREE_FILLERS = YN_FILLERS | {
    "to", "the", "terms", "and", "conditions", "it", "this", "that", "them", "with", "all",
    "of", "los", "terminos", "condiciones",
}
_TERMS = re.compile(
    r"\b(?:terms?|conditions|agreement|terminos|condiciones|agreeing to|"
    r"what am i (?:signing|agreeing)|read it|see it)\b"
)


def yes_no(tokens: list[str]) -> Meaning:
    return decide(match_phrases(tokens, YES_NO, YN_FILLERS)) or invalid("not_understood")


_BACK = phrase_table(
    no=(
        "n", "no", "nop", "nope", "nah", "naw", "no thanks", "no thank you", "back", "go back",
        "never mind", "nevermind", "nvm", "no way", "negative", "cambiar", "change it",
    )
)


def only_no(tokens: list[str]) -> bool:
    """The reply is a plain no or "go back" (not "later": the date step wants a date then)."""
    labels = match_phrases(tokens, _BACK, YN_FILLERS)
    return bool(labels) and set(labels) == {"no"}


def parse_agree(text: str) -> Meaning:
    tokens = reply_words(text)
    decided = decide(match_phrases(tokens, _AGREE_TABLE, _AGREE_FILLERS))
    if decided is not None:
        return decided
    if _TERMS.search(" ".join(tokens)):
        return Meaning("link")
    return invalid("not_understood")
