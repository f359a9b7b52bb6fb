"""Reading customer replies: keywords, yes/no, amounts, dates, menu choices, emails, codes.

``classify_keyword`` recognises the words that work in every state (STOP, HELP, AGENT...);
``parse_reply`` applies it first, then the reading the current step expects.

The module is pure: no I/O and no clock. ``today`` (the customer's local date) is a
parameter, so the same reply always reads the same way in tests and in production.
Money comes back as integer cents (read through ``Decimal``, never ``float``).

Choices worth knowing (each is pinned by tests/test_parsing.py):

* Opt-out. A message that is only an opt-out word (STOP, STOPALL, UNSUBSCRIBE, CANCEL,
  END, QUIT, OPTOUT, REVOKE, ALTO, PARAR, CANCELAR, BASTA, BAJA) plus politeness
  ("Stop. Thank you") or a clear opt-out phrase anywhere ("stop texting me", "no more
  texts", "take me off your list", "no me manden mas mensajes") is ``opt_out``.
  A complaint, dispute, legal threat or wrong-number reply is ``ask_agent``, and so is
  an opt-out word inside a longer sentence that is not a clear opt-out ("stop harassing
  me", "cancel my payment"): a person decides. A clear opt-out phrase wins over a
  complaint marker ("stop texting me, this is a scam" is ``opt_out``): it is honoured
  at once.
* Weekdays (read in the customer's week, Monday first). "friday" is the next Friday
  after today (1 to 7 days ahead); "this friday" is the coming Friday, today included;
  "next friday" is the Friday of NEXT calendar week: on Wednesday 2026-11-25 "friday"
  and "this friday" are 2026-11-27 and "next friday" is 2026-12-04, while "next monday"
  is 2026-11-30 (the Monday of next week is also the coming Monday). "friday after
  next" is one week after "next friday"; "last friday" is in the past (refused).
* A date equal to ``today`` reads as ``now`` ("today", "11/25" on 11/25, "this wednesday"
  on a Wednesday).
* M/D without a year: this year if it is today or later; if it was at most
  ``PAST_GRACE_DAYS`` days ago it is a past date (refused, the customer most likely
  mistyped); otherwise next year ("1/5" in November is next January).
* Day-of-month phrases ("the 15th", "on the 1st", a bare "15" in the date step): the
  next such day on or after today, skipping months too short for it.
* "no" is ``no`` in every step where it is not data, so the engine can go back (the
  design makes NO or MENU the way back in a flow). In confirm, agree, contact and any,
  "not now", "wait", "later" are ``no`` too; in amount, date and menu only a plain no or
  "go back" is (there "not now" re-prompts: the step wants a date or an amount).
* Number words go through text2num ("fifty", "twenty-five dollars", "one hundred");
  amounts are read with ``Decimal`` and returned as int cents. Several different numbers
  are ``ambiguous``; dates, ordinals and clock times in an amount reply are ignored
  ("50 on the 15th" is $50.00).
* An account ID needs a digit (so "hello" or "nope" never burns a verification try), and
  an SSN-shaped reply (123-45-6789) is refused with ``looks_like_ssn``.
* dateparser is only a fallback for periods ("in a fortnight"); the usual forms are read
  by the rules below, which are faster and stricter (dateparser reads "1" as a date).
* "pay" counts as yes ("Reply PAY to pay by text").
* PLAN ("my plan", "what's my plan") is a keyword: it works in every step. The plan step
  reads a change to a signed plan in words: ``plan_move`` ("move my payment", "change the
  date"), ``plan_skip`` ("skip this month"), ``plan_extra`` ("can I pay more"; with the
  amount in cents as its value when one comes with it, "pay $50 extra"); two of them at once
  are ``ambiguous``; anything else is read as yes/no.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
import unicodedata
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from text_to_num import alpha2digit

__all__ = [
    "KINDS",
    "REASONS",
    "STEPS",
    "Meaning",
    "classify_keyword",
    "parse_reply",
]

KINDS = frozenset(
    {
        "contact",  # web forms only: {"email": ..., "phone": ...}
        "opt_out", "opt_in", "help", "agent", "balance", "link", "menu", "yes", "no", "agree",
        "full", "now", "amount", "date", "choice", "email", "text", "invalid", "ask_agent",
        "plan", "plan_move", "plan_skip", "plan_extra",
    }
)
REASONS = frozenset(
    {
        "empty", "not_understood", "not_positive", "too_many_decimals", "ambiguous",
        "too_large", "past_date", "beyond_horizon", "bad_email", "no_such_option", "too_long",
        "looks_like_ssn",
    }
)
STEPS = (
    "any", "confirm", "agree", "amount", "date", "menu", "contact", "account_id", "code", "text",
    "plan",
)

MAX_CENTS = 100_000_000  # $1,000,000.00: anything above is a typo (or a phone number)
MAX_TEXT = 1600  # Twilio's longest inbound body; longer text is refused by the step readers
PAST_GRACE_DAYS = 60  # M/D up to this many days ago is a past date, beyond it next year


@dataclass(frozen=True)
class Meaning:
    """What a reply means.

    kind: one of KINDS.
    value: cents (int) for amount, a date for date, an int for choice, a str for email and
      text (for the code step a knowledge answer is "LAST4|YYYY-MM-DD").
    reason: for invalid, one of REASONS.
    """

    kind: str
    value: int | datetime.date | str | None = None
    reason: str | None = None


def _invalid(reason: str) -> Meaning:
    return Meaning("invalid", reason=reason)


# --------------------------------------------------------------------------------------
# Normalising text
# --------------------------------------------------------------------------------------

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


def _nfkc(text: str) -> str:
    return _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def _fold(text: str) -> str:
    """NFKC, lowercase, accents stripped, apostrophes dropped ("don't" -> "dont")."""
    t = _nfkc(text).lower()
    t = unicodedata.normalize("NFKD", t)
    t = "".join(c for c in t if not unicodedata.combining(c))
    return _APOSTROPHES.sub("", t)


def _words(text: str) -> list[str]:
    """The reply as lowercase ASCII words; emoji that mean something become words."""
    t = text
    for rx, word in _EMOJI_WORDS:
        t = rx.sub(word, t)
    t = _URL.sub(" ", t)
    t = _EMAILISH.sub(" ", t)  # "stop@example.com" is an address, not STOP
    t = _NON_WORD.sub(" ", _fold(t))
    words = [_LONG_RUN.sub(r"\1", w) for w in t.split()]
    if len(words) > 1 and all(len(w) == 1 and w.isalpha() for w in words):
        words = ["".join(words)]  # "S T O P" -> "stop"
    return words


def _phrases(*items: str) -> frozenset[tuple[str, ...]]:
    return frozenset(tuple(p.split()) for p in items)


def _table(**groups: Iterable[str]) -> dict[tuple[str, ...], str]:
    out: dict[tuple[str, ...], str] = {}
    for label, items in groups.items():
        for p in items:
            out[tuple(p.split())] = label
    return out


def _match(
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


def _decide(labels: list[str] | None) -> Meaning | None:
    """One label -> that meaning; several different ones -> ambiguous; none -> None."""
    if not labels:
        return None
    distinct = set(labels)
    if len(distinct) > 1:
        return _invalid("ambiguous")
    return Meaning(distinct.pop())


# --------------------------------------------------------------------------------------
# Keywords that work in every step
# --------------------------------------------------------------------------------------

_OPT_OUT_WORDS = frozenset(
    {
        "stop", "stopall", "unsubscribe", "unsub", "cancel", "end", "quit", "optout", "revoke",
        "alto", "parar", "cancelar", "basta", "baja",
    }
)
# Words that may surround an opt-out word ("Stop. Thank you", "STOP IT", "alto por favor").
_OPT_OUT_FILLERS = frozenset(
    {
        "please", "pls", "plz", "thank", "thanks", "you", "thx", "ty", "ok", "okay", "now",
        "it", "all", "me", "just", "no", "sir", "maam", "already", "immediately", "asap",
        "por", "favor", "gracias", "ya", "yes",
    }
)
# Opt-out words that are also ordinary English: with these only politeness may follow
# ("cancel please" opts out, "cancel it" goes to an agent, "end of the month" is a date).
_WEAK_OPT_OUT_WORDS = frozenset({"cancel", "cancelar", "end", "quit"})
_POLITE = frozenset(
    {"please", "pls", "plz", "thank", "thanks", "you", "thx", "ty", "ok", "okay", "por",
     "favor", "gracias", "just"}
)
# An opt-out word inside a longer message that is not a clear opt-out: a person decides.
_MAYBE_OPT_OUT_WORDS = frozenset(
    {"stop", "cancel", "cancelar", "alto", "parar", "basta", "revoke"}
)

_TEXTING = (
    r"(?:text|texts|texting|txt|txts|txting|message|messages|messaging|msg|msgs|sms|contact|"
    r"contacting|email|emails|emailing|sending|send|write|writing|bothering|bugging)"
)
_OPT_OUT_PHRASES = re.compile(
    r"\b(?:"
    r"unsubscribe|unsub|stop ?all|opt ?out|opt me out|optout|"
    rf"(?:stop|quit|cease) {_TEXTING}|"
    rf"(?:dont|do not|never) (?:ever )?(?:{_TEXTING}|text me|msg me)|"
    r"no more (?:text|texts|txt|txts|message|messages|msgs|sms|texting|messaging|emails?|"
    r"contact)|"
    r"remove me|remove (?:my )?(?:number|phone|phone number|cell|name)|"
    r"take (?:me|my number|my name|my phone) off|"
    r"(?:off|from) (?:your|the|this) (?:contact |mailing |texting )?list|"
    r"leave me alone|revoke (?:my )?consent|withdraw (?:my )?consent|i revoke|"
    # Spanish
    r"no (?:me )?(?:mande|manden|mandes|envie|envien|envies|escriba|escriban|escribas|"
    r"contacte|contacten|molesten|moleste|textee|texteen)|"
    r"no mas (?:mensajes|mensaje|textos|texto|msjs|sms)|"
    r"(?:ya )?no quiero (?:mas |recibir )?(?:mensajes|textos)|"
    r"dej(?:en|e|a) de (?:mandar|enviar|escribir|contactar|molestar|textear)\w*|"
    r"dar(?:me)? de baja"
    r")\b"
)
# Complaints, disputes, legal threats, wrong number, hardship: a person decides.
_ASK_AGENT = re.compile(
    r"\b(?:"
    r"harass\w*|threat\w*|bully\w*|"
    r"sue|suing|sued|lawsuit|lawyer|attorney|attorneys|legal|court|judge|"
    r"cfpb|ftc|bbb|fdcpa|tcpa|fcra|attorney general|report you|reporting you|"
    r"(?:file|filing) a complaint|complaint|"
    r"scam|scams|scammer|scammers|fraud|fraudulent|phishing|spam|"
    r"not my (?:debt|account|bill|loan|card)|not mine|"
    r"(?:dont|do not|never) owe|owe (?:you )?nothing|i owe nothing|"
    r"already paid|i paid|paid (?:it|this|that|off)|"
    r"(?:dont|do not) recognize|never (?:opened|had) (?:an|this|that|the|any)|"
    r"wrong (?:number|person)|how did you get (?:my|this) (?:number|phone|info)|"
    r"dispute|disputing|disputed|validation|validate|"
    r"cease and desist|cease|"
    r"bankrupt|bankruptcy|deceased|passed away|died|identity theft|"
    r"not interested|"
    r"(?:dont|do not|stop|quit|no more) (?:call|calling|calls)|"
    r"fuck\w*|fck|f off|screw you|"
    # Spanish
    r"no es mi deuda|ya (?:lo )?pague|estafa|fraude|abogado|demanda|acoso|numero equivocado"
    r")\b"
)

_MENU_WORDS = _phrases(
    "menu", "main menu", "start over", "restart", "start again", "begin again", "reset",
    "menu please", "go to menu", "back to menu", "back to the menu", "go to the menu",
    "the menu", "show menu", "menu principal", "empezar de nuevo", "volver a empezar",
)
_MENU_ANYWHERE = re.compile(r"\b(?:start over|main menu)\b")
_OPT_IN_WORDS = _phrases(
    "start", "unstop", "subscribe", "resubscribe", "opt in", "optin", "opt me in", "start please",
    "start texting", "start texting me", "resume",
)
_AGENT_ANYWHERE = re.compile(
    r"\b(?:"
    r"agent|agents|agente|representative|representatives|representante|operator|supervisor|"
    r"manager|human|humano|real person|live person|actual person|customer service|"
    r"customer support|"
    r"(?:talk|speak|chat) (?:to|with) (?:a |an |the |some |your )?(?:someone|somebody|person|"
    r"people|rep|agent|human|representative|manager|supervisor|real|live|actual)|"
    r"call me|give me a call|can (?:someone|somebody|you) call|"
    r"are you a (?:bot|robot|machine|computer|real)|"
    r"hablar con|llamame|llamenme"
    r")\b"
)
_AGENT_WORDS = _phrases("rep", "a rep", "person", "a person", "someone", "operator")
_HELP_WORDS = _phrases(
    "help", "info", "information", "more info", "ayuda", "help me", "i need help", "need help",
    "help please", "can you help", "can you help me", "what is this", "whats this",
    "who is this", "who are you", "what is this about", "whats this about", "who is this from",
    "what is this for", "necesito ayuda", "quien es", "quien eres",
)
_HELP_FILLERS = frozenset({"please", "pls", "plz", "por", "favor", "i", "need", "some", "me"})
_BALANCE_WORDS = _phrases(
    "balance", "bal", "my balance", "balance please", "check balance", "check my balance",
    "current balance", "balance due", "amount due", "total due", "saldo", "mi saldo",
)
_BALANCE_ANYWHERE = re.compile(
    r"\b(?:"
    r"how much (?:do|did|does|shall|would) i (?:still )?owe|how much i owe|"
    r"how much (?:is|do i have) (?:left|remaining|owed|owing|due)|"
    r"what (?:do|did) i (?:still )?owe|"
    r"(?:whats|what is|wats|wat is|how much is|tell me|check) (?:my|the) (?:current |remaining |"
    r"total |account )?(?:balance|bal|amount due)|"
    r"cuanto debo|cual es mi saldo"
    r")\b"
)
_PLAN_WORDS = _phrases(
    "plan", "my plan", "payment plan", "my payment plan", "plan please", "plan status",
    "my plan status", "plan details", "my plan details", "the plan", "show my plan",
    "see my plan", "view my plan", "check my plan", "show plan", "view plan", "mi plan",
    "plan de pagos", "mi plan de pagos",
)
_PLAN_ANYWHERE = re.compile(
    r"\b(?:"
    r"(?:whats|what is|check|show me|show|see|view|how is|hows|status of) (?:my|the) "
    r"(?:payment )?plan|"
    r"(?:where|how) (?:am i|do i stand) (?:on|with) (?:my|the) (?:payment )?plan"
    r")\b"
)
_LINK_ANYWHERE = re.compile(r"\b(?:link|links|url|enlace|liga|website|web site|pay online)\b")


def classify_keyword(text: str) -> Meaning | None:
    """The keywords that work in any state, or None when the text is not one.

    Kinds: opt_out, opt_in, help, agent, balance, link, menu, plan, ask_agent.
    """
    tokens = _words(text)
    if not tokens:
        return None
    joined = " ".join(tokens)
    whole = tuple(tokens)

    # 1. Opt-out: a clear phrase, or an opt-out word with nothing but politeness around it.
    if _OPT_OUT_PHRASES.search(joined):
        return Meaning("opt_out")
    core = {t for t in tokens if t not in _OPT_OUT_FILLERS}  # "STOP STOP" is one STOP
    if len(core) == 1 and (word := next(iter(core))) in _OPT_OUT_WORDS:
        if word not in _WEAK_OPT_OUT_WORDS or all(t in _POLITE for t in tokens if t != word):
            return Meaning("opt_out")
    if whole in {("opt", "out"), ("stop", "all")}:
        return Meaning("opt_out")

    # 2. Complaints and maybe-opt-outs go to a person.
    if _ASK_AGENT.search(joined) or any(t in _MAYBE_OPT_OUT_WORDS for t in tokens):
        return Meaning("ask_agent")

    # 3. The other keywords.
    if whole in _MENU_WORDS or _MENU_ANYWHERE.search(joined):
        return Meaning("menu")
    if whole in _OPT_IN_WORDS:
        return Meaning("opt_in")
    if _AGENT_ANYWHERE.search(joined) or whole in _AGENT_WORDS:
        return Meaning("agent")
    help_core = [t for t in tokens if t not in _HELP_FILLERS]
    if whole in _HELP_WORDS or (help_core and set(help_core) <= {"help", "ayuda", "info"}):
        return Meaning("help")
    if whole in _BALANCE_WORDS or _BALANCE_ANYWHERE.search(joined):
        return Meaning("balance")
    if whole in _PLAN_WORDS or _PLAN_ANYWHERE.search(joined):
        return Meaning("plan")
    if _LINK_ANYWHERE.search(joined):
        return Meaning("link")
    return None


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


def _parse_plan(text: str) -> Meaning:
    joined = " ".join(_words(text))
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
        return _invalid("ambiguous")
    if found == {"plan_extra"}:
        amount = _parse_amount(text)  # "pay 50 extra": the amount comes with the request
        return Meaning("plan_extra", amount.value if amount.kind == "amount" else None)
    if found:
        return Meaning(found.pop())
    return _yes_no(_words(text))


# --------------------------------------------------------------------------------------
# Yes / no / agree
# --------------------------------------------------------------------------------------

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
_YN_FILLERS = frozenset(
    {
        "please", "pls", "plz", "thanks", "thank", "you", "thx", "ty", "so", "just", "then",
        "lol", "and", "sir", "maam", "por", "favor", "gracias", "now", "oh", "um", "uh", "hmm",
        "well",
    }
)
_YES_NO = _table(yes=_YES, no=_NO)

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
    **_table(agree=_YES, no=_NO),
    **_table(agree=_AGREE, no=_DISAGREE),
}
_AGREE_FILLERS = _YN_FILLERS | {
    "to", "the", "terms", "and", "conditions", "it", "this", "that", "them", "with", "all",
    "of", "los", "terminos", "condiciones",
}
_TERMS = re.compile(
    r"\b(?:terms?|conditions|agreement|terminos|condiciones|agreeing to|"
    r"what am i (?:signing|agreeing)|read it|see it)\b"
)

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
_CONTACT_TABLE = {**_YES_NO, **_table(yes=_CONTACT_YES, no=_CONTACT_NO)}
_CONTACT_FILLERS = _YN_FILLERS | {"is", "the", "email", "address", "one", "that"}


def _yes_no(tokens: list[str]) -> Meaning:
    return _decide(_match(tokens, _YES_NO, _YN_FILLERS)) or _invalid("not_understood")


_BACK = _table(
    no=(
        "n", "no", "nop", "nope", "nah", "naw", "no thanks", "no thank you", "back", "go back",
        "never mind", "nevermind", "nvm", "no way", "negative", "cambiar", "change it",
    )
)


def _only_no(tokens: list[str]) -> bool:
    """The reply is a plain no or "go back" (not "later": the date step wants a date then)."""
    labels = _match(tokens, _BACK, _YN_FILLERS)
    return bool(labels) and set(labels) == {"no"}


def _parse_agree(text: str) -> Meaning:
    tokens = _words(text)
    decided = _decide(_match(tokens, _AGREE_TABLE, _AGREE_FILLERS))
    if decided is not None:
        return decided
    if _TERMS.search(" ".join(tokens)):
        return Meaning("link")
    return _invalid("not_understood")


# --------------------------------------------------------------------------------------
# Email (contact step)
# --------------------------------------------------------------------------------------

_EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\]{},;:\"]*@[^\s<>()\[\]{},;:\"]*")
_EMAIL_VALID = re.compile(
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
)
_DOMAIN_WITHOUT_AT = re.compile(
    r"\b[a-z0-9._%+-]+\.(?:com|net|org|edu|gov|us|io|co|info|biz|me)\b", re.IGNORECASE
)


def _parse_contact(text: str) -> Meaning:
    raw = _nfkc(text)
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
            return _invalid("ambiguous")
        return _invalid("bad_email")
    tokens = _words(raw)
    decided = _decide(_match(tokens, _CONTACT_TABLE, _CONTACT_FILLERS))
    if decided is not None:
        return decided
    if _DOMAIN_WITHOUT_AT.search(raw):
        return _invalid("bad_email")
    return _invalid("not_understood")


# --------------------------------------------------------------------------------------
# Amounts (integer cents)
# --------------------------------------------------------------------------------------

_FULL_CORE = frozenset(
    {"full", "all", "everything", "whole", "entire", "total", "rest", "remaining", "payoff",
     "todo", "completo"}
)
_FULL_FILLERS = frozenset(
    {
        "i", "ill", "will", "can", "could", "want", "wanna", "to", "pay", "the", "it", "of",
        "please", "pls", "id", "like", "do", "lets", "just", "thing", "balance", "amount", "in",
        "my", "off", "that", "ok", "okay", "yes", "go", "with", "would", "thanks", "thank",
        "you", "lo", "pagar", "quiero", "el", "saldo", "at", "once", "one", "shot",
    }
)
_NEGATIONS = frozenset(
    {"not", "no", "cant", "cannot", "dont", "wont", "couldnt", "never", "nunca", "unable"}
)
_NEGATIVE = re.compile(r"(?:^|[^\w.,])[-\u2212\u2013]\s*\$?\s*[0-9]|\$\s*[-\u2212\u2013]\s*[0-9]")
_NEGATIVE_WORDS = re.compile(r"\b(?:minus|negative|menos)\b")
# Things with digits that are not amounts: dates, ordinals, clock times.
_NOT_AMOUNT = re.compile(
    r"\b[0-9]{1,2}/[0-9]{1,2}(?:/[0-9]{2,4})?\b"
    r"|\b[0-9]{1,2}(?:st|nd|rd|th)\b"
    r"|\b[0-9]{1,2}(?::[0-9]{2})?\s*(?:am|pm|a\.m\.|p\.m\.)"
    r"|\b[0-9]{1,2}:[0-9]{2}\b",
    re.IGNORECASE,
)
_DOLLARS_AND_CENTS = re.compile(
    r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)\s*(?:(?:dollars?|bucks|usd|dolares)\s*(?:and|&|y|,)?|"
    r"and|&)\s*([0-9]{1,2})\s*(?:cents?|centavos|\u00a2)(?![a-z])",
    re.IGNORECASE,
)
_CENTS_ONLY = re.compile(r"(?<![0-9.,])([0-9]{1,2})\s*(?:cents?|centavos|\u00a2)(?![a-z])", re.I)
_NUMBER = re.compile(
    r"(?<![0-9])(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9])|(?<![0-9])\.[0-9]+"
)
_THOUSANDS_SUFFIX = re.compile(r"k(?![a-z])", re.IGNORECASE)


def _alpha2digit(text: str, lang: str = "en") -> str:
    try:
        return alpha2digit(text, lang, threshold=0)
    except Exception:  # a number-word library must never turn a reply into a 500
        return text


def _is_full(tokens: list[str]) -> bool:
    if not tokens or any(t in _NEGATIONS for t in tokens):
        return False
    if not all(t in _FULL_CORE or t in _FULL_FILLERS for t in tokens):
        return False
    has = set(tokens)
    return bool(has & _FULL_CORE) or ("pay" in has and ("off" in has or "balance" in has))


def _parse_amount(text: str) -> Meaning:
    tokens = _words(text)
    if _is_full(tokens):
        return Meaning("full")
    if not any(c.isdigit() for c in text) and _only_no(tokens):
        return Meaning("no")

    t = _nfkc(text)
    t = _alpha2digit(t, "en")
    if not re.search(r"[0-9]", t):
        t = _alpha2digit(t, "es")
    if _NEGATIVE.search(t) or _NEGATIVE_WORDS.search(_fold(t)):
        return _invalid("not_positive")

    values: list[Decimal] = []

    def take_cents(m: re.Match[str]) -> str:
        dollars = Decimal(m.group(1).replace(",", ""))
        values.append(dollars + Decimal(m.group(2)) / 100)
        return " "

    t = _DOLLARS_AND_CENTS.sub(take_cents, t)
    def take_cents_only(m: re.Match[str]) -> str:
        values.append(Decimal(m.group(1)) / 100)
        return " "

    t = _CENTS_ONLY.sub(take_cents_only, t)
    t = _NOT_AMOUNT.sub(" ", t)
    for m in _NUMBER.finditer(t):
        try:
            value = Decimal(m.group(0).replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            continue
        if _THOUSANDS_SUFFIX.match(t, m.end()):
            value *= 1000
        values.append(value)

    if not values:
        return _invalid("not_understood")
    if len(set(values)) > 1:
        return _invalid("ambiguous")
    value = values[0]
    if value <= 0:
        return _invalid("not_positive")
    if value * 100 > MAX_CENTS:  # checked first: quantize() fails on huge numbers
        return _invalid("too_large")
    if value != value.quantize(Decimal("0.01")):
        return _invalid("too_many_decimals")
    return Meaning("amount", int(value * 100))


# --------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------

_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sept": 9, "sep": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
    "enero": 1, "ene": 1, "febrero": 2, "marzo": 3, "abril": 4, "abr": 4, "mayo": 5,
    "junio": 6, "julio": 7, "agosto": 8, "ago": 8, "septiembre": 9, "setiembre": 9,
    "octubre": 10, "noviembre": 11, "diciembre": 12, "dic": 12,
}
_WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "weds": 2,
    "wed": 2, "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4,
    "saturday": 5, "sat": 5, "sunday": 6, "sun": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5,
    "domingo": 6,
}


def _alternation(words: Iterable[str]) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


_MONTH_RX = _alternation(_MONTHS)
_WEEKDAY_RX = _alternation(_WEEKDAYS)
_ORD = r"(?:st|nd|rd|th|o|a)?"

_ISO_DATE = re.compile(r"\b([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\b")
_US_DATE = re.compile(
    r"(?<![0-9/.-])([0-9]{1,2})[/.-]([0-9]{1,2})(?:[/.-]([0-9]{4}|[0-9]{2}))?(?![0-9])(?![/.-][0-9])"
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_RX})\.?\s+(?:the\s+)?([0-9]{{1,2}}){_ORD}\b(?:\s+(?:of\s+|de\s+)?([0-9]{{4}})\b)?"
)
_DAY_MONTH = re.compile(
    rf"\b([0-9]{{1,2}}){_ORD}\s+(?:of\s+|de\s+)?({_MONTH_RX})\b\.?(?:\s+(?:of\s+|de\s+|del\s+)?"
    rf"([0-9]{{4}})\b)?"
)
_DAY_OF_NEXT_MONTH = re.compile(
    r"\b(?:the\s+)?([0-9]{1,2})(?:st|nd|rd|th)?\s+of\s+next\s+month\b"
    r"|\b(?:beginning|start)\s+of\s+next\s+month\b"
)
_DAY_OF_MONTH = re.compile(
    r"\b(?:(?:on\s+)?the\s+|el\s+(?:dia\s+)?)?([0-9]{1,2})(?:st|nd|rd|th)\b"
    r"|\b(?:on\s+)?the\s+([0-9]{1,2})\b(?!\s*(?:[0-9]|days?|weeks?|months?|dollars?))"
    r"|\bel\s+(?:dia\s+)?([0-9]{1,2})\b(?!\s*(?:[0-9]|de))"
)
_WEEKDAY = re.compile(
    r"\b(?:(this coming|this|coming|next week on|next week|next|last|past|previous|este|"
    r"el proximo|proximo|el pasado|on|el)\s+)?"
    rf"({_WEEKDAY_RX})\b"
    r"(?:\s+(after next|next week|de la proxima semana|de la semana que viene|que viene|"
    r"pasado|last week))?"
)
_IN_PERIOD = re.compile(
    r"\b(?:in|en|within)\s+(a|an|un|una|[0-9]{1,3})\s+"
    r"(days?|weeks?|wks?|months?|dias?|semanas?|mes|meses)\b"
    r"|\b(a|an|[0-9]{1,3})\s+(days?|weeks?|wks?|months?)\s+from\s+(?:now|today)\b"
)
_PERIOD_FROM_WEEKDAY = re.compile(
    rf"\b(a|an|[0-9]{{1,3}})\s+(days?|weeks?)\s+from\s+(?:this\s+|next\s+)?({_WEEKDAY_RX})\b"
)
_DAY_AFTER_TOMORROW = re.compile(r"\b(?:the\s+)?day\s+after\s+tomorrow\b|\bpasado\s+manana\b")
_TOMORROW = re.compile(
    r"\b(?:tomorrow|tmrw|tmr|tmw|tmrow|tomorow|tommorow|tommorrow|tomorrrow|2morrow|2moro|"
    r"manana)\b"
)
_YESTERDAY = re.compile(r"\b(?:yesterday|ayer)\b")
_NEXT_WEEK = re.compile(
    r"\bnext\s+week\b|\bla\s+proxima\s+semana\b|\bla\s+semana\s+que\s+viene\b"
)
_NEXT_MONTH = re.compile(r"\bnext\s+month\b|\bel\s+proximo\s+mes\b|\bel\s+mes\s+que\s+viene\b")
_END_OF_NEXT_MONTH = re.compile(r"\bend\s+of\s+next\s+month\b")
_END_OF_MONTH = re.compile(
    r"\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+)?month\b|\bfin\s+de\s+mes\b|\bmonth\s+end\b"
)
_WEEKEND = re.compile(r"\b(next\s+|this\s+)?weekend\b")
_NEGATED_NOW = re.compile(
    r"\b(?:not|cant|cannot|dont|wont|couldnt|no)\s+(?:[a-z]+\s+){0,2}?(?:right\s+)?"
    r"(?:now|today|tonight|ahora|hoy)\b"
)
_NOW = re.compile(
    r"\b(?:right\s+now|now|today|tonight|asap|immediately|right\s+away|ahora|ahorita|hoy|"
    r"ahora\s+mismo)\b"
)
_DATEPARSER_GATE = re.compile(
    r"\b(?:day|days|week|weeks|month|months|year|years|fortnight|dia|dias|semana|semanas|"
    r"mes|meses)\b"
)
_DATEPARSER_LEAD = re.compile(
    r"^(?:(?:i|we)\s+(?:can|could|will|would|ll)\s+(?:pay|do)\s+(?:it\s+)?|pay\s+(?:it\s+)?|"
    r"lets\s+(?:do|say)\s+|how\s+about\s+|maybe\s+|on\s+|by\s+)+"
)
_BARE_DAY_FILLERS = frozenset({"the", "on", "el", "dia", "day", "pay", "by", "please"})

_NOW_MARK = "now"


def _add_months(day: datetime.date, months: int) -> datetime.date:
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return datetime.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _last_of_month(year: int, month: int) -> datetime.date:
    return datetime.date(year, month, calendar.monthrange(year, month)[1])


def _next_day_of_month(day: int, today: datetime.date) -> datetime.date | None:
    """The next `day`-th of a month on or after today (months too short are skipped)."""
    if not 1 <= day <= 31:
        return None
    year, month = today.year, today.month
    for _ in range(13):
        if day <= calendar.monthrange(year, month)[1]:
            candidate = datetime.date(year, month, day)
            if candidate >= today:
                return candidate
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return None  # pragma: no cover - some month in the next year always has days 1..31


def _month_day(
    month: int, day: int, year: int | None, today: datetime.date
) -> datetime.date | None:
    """Resolve M/D[/Y]. Without a year see PAST_GRACE_DAYS."""
    if year is not None:
        if year < 100:
            year += 2000
        try:
            return datetime.date(year, month, day)
        except ValueError:
            return None
    try:
        candidate: datetime.date | None = datetime.date(today.year, month, day)
    except ValueError:
        candidate = None
    if candidate is not None and (
        candidate >= today or (today - candidate).days <= PAST_GRACE_DAYS
    ):
        return candidate
    for y in range(today.year + 1, today.year + 5):  # Feb 29 waits for a leap year
        try:
            return datetime.date(y, month, day)
        except ValueError:
            continue
    return None


def _weekday_date(weekday: int, prefix: str | None, suffix: str | None, today: datetime.date):
    ahead = (weekday - today.weekday()) % 7  # 0..6, 0 = today
    prefix = (prefix or "").strip()
    suffix = (suffix or "").strip()
    if prefix in {"last", "past", "previous", "el pasado"} or suffix in {"pasado", "last week"}:
        behind = (today.weekday() - weekday) % 7 or 7
        return today - datetime.timedelta(days=behind)
    if prefix in {"next", "next week", "next week on", "el proximo", "proximo"} or suffix in {
        "next week", "de la proxima semana", "de la semana que viene", "que viene", "after next",
    }:
        next_monday = today + datetime.timedelta(days=7 - today.weekday())
        result = next_monday + datetime.timedelta(days=weekday)
        if suffix == "after next":
            result += datetime.timedelta(days=7)
        return result
    if suffix == "after next":  # "friday after next" (no prefix): see above
        next_monday = today + datetime.timedelta(days=7 - today.weekday())
        return next_monday + datetime.timedelta(days=weekday + 7)
    if prefix in {"this", "this coming", "coming", "este"}:
        return today + datetime.timedelta(days=ahead)
    return today + datetime.timedelta(days=ahead or 7)


def _period(count: str, unit: str, base: datetime.date) -> datetime.date:
    n = 1 if count in {"a", "an", "un", "una"} else int(count)
    n = min(n, 1200)
    if unit.startswith(("day", "dia")):
        return base + datetime.timedelta(days=n)
    if unit.startswith(("week", "wk", "semana")):
        return base + datetime.timedelta(weeks=n)
    return _add_months(base, n)


@functools.lru_cache(maxsize=32)
def _date_data_parser(today: datetime.date):
    """dateparser, set up once per local day (building its settings is the slow part)."""
    from dateparser.date import DateDataParser

    return DateDataParser(
        languages=["en", "es"],
        settings={
            "PREFER_DATES_FROM": "future",
            "RELATIVE_BASE": datetime.datetime.combine(today, datetime.time(12, 0)),
            "DATE_ORDER": "MDY",
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )


def _dateparser(text: str, today: datetime.date) -> datetime.date | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateparser warns about its own internals
            data = _date_data_parser(today).get_date_data(text)
    except Exception:  # dateparser can fail on odd input; an unread date is just unread
        return None
    return data.date_obj.date() if data and data.date_obj else None


def _check_date(value: datetime.date, today: datetime.date, horizon: datetime.date | None):
    if value < today:
        return _invalid("past_date")
    if value == today:
        return Meaning("now")
    if horizon is not None and value > horizon:
        return _invalid("beyond_horizon")
    return Meaning("date", value)


def _parse_date(text: str, today: datetime.date, horizon: datetime.date | None) -> Meaning:
    tokens = _words(text)
    if _only_no(tokens) and not any(c.isdigit() for c in text):
        return Meaning("no")

    t = _fold(text)
    t = _alpha2digit(t, "en")
    t = re.sub(r"[,;!?()\"]", " ", t)
    t = re.sub(r"\s+", " ", t).strip()
    found: list[datetime.date | str | None] = []  # a date, _NOW_MARK, or None (unreadable)

    def scan(rx: re.Pattern[str], resolve) -> None:
        nonlocal t

        def repl(m: re.Match[str]) -> str:
            found.append(resolve(m))
            return " " * len(m.group(0))

        t = rx.sub(repl, t)

    negated = bool(_NEGATED_NOW.search(t))
    t = _NEGATED_NOW.sub(" ", t)
    scan(_ISO_DATE, lambda m: _month_day(int(m[2]), int(m[3]), int(m[1]), today))
    scan(
        _US_DATE,
        lambda m: _month_day(int(m[1]), int(m[2]), int(m[3]) if m[3] else None, today),
    )
    scan(_MONTH_DAY, lambda m: _month_day(_MONTHS[m[1]], int(m[2]), _int(m[3]), today))
    scan(_DAY_MONTH, lambda m: _month_day(_MONTHS[m[2]], int(m[1]), _int(m[3]), today))
    scan(_END_OF_NEXT_MONTH, lambda m: _last_of_month_offset(today, 1))
    scan(_END_OF_MONTH, lambda m: _last_of_month_offset(today, 0))
    scan(_DAY_OF_NEXT_MONTH, lambda m: _day_of_next_month(m[1], today))
    scan(_PERIOD_FROM_WEEKDAY, lambda m: _period(m[1], m[2], _weekday_date(
        _WEEKDAYS[m[3]], None, None, today)))
    scan(_IN_PERIOD, lambda m: _period(m[1] or m[3], m[2] or m[4], today))
    scan(_DAY_AFTER_TOMORROW, lambda m: today + datetime.timedelta(days=2))
    scan(_TOMORROW, lambda m: today + datetime.timedelta(days=1))
    scan(_YESTERDAY, lambda m: today - datetime.timedelta(days=1))
    scan(_WEEKDAY, lambda m: _weekday_date(_WEEKDAYS[m[2]], m[1], m[3], today))
    scan(_NEXT_WEEK, lambda m: today + datetime.timedelta(days=7))
    scan(_NEXT_MONTH, lambda m: _add_months(today, 1))
    scan(_WEEKEND, lambda m: _weekend(m[1], today))
    scan(_DAY_OF_MONTH, lambda m: _next_day_of_month(int(m[1] or m[2] or m[3]), today))
    scan(_NOW, lambda m: _NOW_MARK)

    if not found:
        rest = [w for w in tokens if w not in _BARE_DAY_FILLERS]
        if len(rest) == 1 and rest[0].isdigit() and len(rest[0]) <= 2:
            found.append(_next_day_of_month(int(rest[0]), today))
        elif not negated and _DATEPARSER_GATE.search(t) and len(t) <= 60:
            found.append(_dateparser(_DATEPARSER_LEAD.sub("", t.strip()), today))

    if not found:
        return _invalid("not_understood")
    readable = {f for f in found if f is not None}
    # "now" and a date equal to today are the same answer.
    readable = {_NOW_MARK if f == today else f for f in readable}
    if len(readable) > 1:
        return _invalid("ambiguous")
    if not readable:
        return _invalid("not_understood")
    value = readable.pop()
    if value == _NOW_MARK:
        return Meaning("now")
    assert isinstance(value, datetime.date)
    return _check_date(value, today, horizon)


def _int(s: str | None) -> int | None:
    return int(s) if s else None


def _last_of_month_offset(today: datetime.date, months: int) -> datetime.date:
    first = _add_months(today.replace(day=1), months)
    return _last_of_month(first.year, first.month)


def _day_of_next_month(day: str | None, today: datetime.date) -> datetime.date | None:
    first = _add_months(today.replace(day=1), 1)
    d = int(day) if day else 1
    if not 1 <= d <= calendar.monthrange(first.year, first.month)[1]:
        return None
    return first.replace(day=d)


def _weekend(prefix: str | None, today: datetime.date) -> datetime.date:
    return _weekday_date(5, "next" if prefix and prefix.strip() == "next" else "this", None, today)


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
_SKIP_TABLE = _table(
    skip=(
        "skip", "skip it", "skip this", "skip offers", "skip the offers", "skip offer", "none",
        "none of them", "none of those", "neither", "neither one", "neither of them",
        "no offer", "no offers", "pass", "saltar", "ninguno", "ninguna",
    )
)


def _parse_menu(text: str, menu_size: int, skip_option: int | None) -> Meaning:
    tokens = _words(text)
    if _only_no(tokens):
        return Meaning("no")
    labels = _match(tokens, _SKIP_TABLE, _MENU_FILLERS | set(_ORDINALS) | set(_CARDINALS)
                    | {t for t in tokens if t.isdigit()})
    if labels is None:
        return _invalid("no_such_option")
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
            return _invalid("ambiguous" if values else "no_such_option")
        return Meaning("choice", skip_option)
    if len(values) != 1:
        return _invalid("ambiguous" if values else "no_such_option")
    value = values.pop()
    if 1 <= value <= menu_size or value == skip_option:
        return Meaning("choice", value)
    return _invalid("no_such_option")


# --------------------------------------------------------------------------------------
# Account ID, one-time code or knowledge answer, free text
# --------------------------------------------------------------------------------------

_ACCOUNT_PREFIX = re.compile(
    r"^(?:(?:my|the|it\s*is|its|it's)\s+)?(?:account|acct|a/c|cuenta)\b"
    r"(?:\s*(?:id|number|num|no\.?|#|numero)\b)?\s*(?:(?:is|es)\b|[:=#])?\s*"
    r"|^(?:it\s*is|its|it's|id|id\s*is)(?:\s+|\s*:\s*)",
    re.IGNORECASE,
)
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_SSN_SHAPE = re.compile(r"[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}")


def _parse_account_id(text: str) -> Meaning:
    s = _nfkc(text).strip()
    s = _ACCOUNT_PREFIX.sub("", s).strip()
    s = s.strip(" \t\r\n.,;:!?\"'()[]").lstrip("#").strip()
    if _SSN_SHAPE.fullmatch(s):
        return _invalid("looks_like_ssn")  # never look an account up by (or echo) an SSN
    if 3 <= len(s) <= 40 and _ACCOUNT_ID.fullmatch(s) and any(c.isdigit() for c in s):
        return Meaning("text", s)
    return _invalid("not_understood")


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
_DOB_MONTH_DAY = re.compile(rf"\b({_MONTH_RX})\.?\s+([0-9]{{1,2}}){_ORD}\s+([0-9]{{4}})\b")
_DOB_DAY_MONTH = re.compile(
    rf"\b([0-9]{{1,2}}){_ORD}\s+(?:of\s+|de\s+)?({_MONTH_RX})\.?\s+(?:de\s+)?([0-9]{{4}})\b"
)


def _dob(year: int, month: int, day: int, today: datetime.date) -> datetime.date | None:
    if year < 100:
        year += 2000 if 2000 + year <= today.year else 1900
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return None
    return born if 1900 <= year and born < today else None


def _parse_code(text: str, today: datetime.date) -> Meaning:
    t = _fold(text)
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
    take(_DOB_MONTH_DAY, lambda m: _dob(int(m[3]), _MONTHS[m[1]], int(m[2]), today))
    take(_DOB_DAY_MONTH, lambda m: _dob(int(m[3]), _MONTHS[m[2]], int(m[1]), today))
    rest = _CODE_LABELS.sub(" ", t)
    rest = re.sub(r"[:=#.]", " ", rest).strip()

    if dobs:
        groups = re.findall(r"[0-9]+", rest)
        leftovers = re.sub(r"[0-9\s-]", "", rest)
        if len(dobs) != 1 or dobs[0] is None or leftovers or len(groups) != 1:
            return _invalid("not_understood")
        if len(groups[0]) != 4:
            return _invalid("not_understood")
        return Meaning("text", f"{groups[0]}|{dobs[0].isoformat()}")

    if re.fullmatch(r"[0-9]+(?:[ -]+[0-9]+)*", rest):
        digits = re.sub(r"[^0-9]", "", rest)
        if 4 <= len(digits) <= 8:
            return Meaning("text", digits)
    return _invalid("not_understood")


def _parse_text(text: str) -> Meaning:
    s = re.sub(r"\s+", " ", _nfkc(text)).strip()
    return Meaning("text", s) if s else _invalid("empty")


# --------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------


def parse_reply(
    text: str,
    step: str,
    *,
    today: datetime.date,
    horizon: datetime.date | None = None,
    menu_size: int = 3,
    skip_option: int | None = None,
) -> Meaning:
    """What `text` means in `step`: keywords first (they work everywhere), then the step.

    step: one of STEPS. today: the customer's local date. horizon: the furthest date a
    payment may be scheduled (None: no limit). menu: choices 1..menu_size, "skip" means
    skip_option. Never raises on any text; an unknown step is a programming error
    (ValueError).
    """
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not _nfkc(text).strip():
        return _invalid("empty")
    keyword = classify_keyword(text)
    if keyword is not None:
        return keyword
    if len(text) > MAX_TEXT:
        return _invalid("too_long")
    try:
        return _parse_step(text, step, today, horizon, menu_size, skip_option)
    except Exception:  # customer text must never turn into a 500
        return _invalid("not_understood")


def _parse_step(
    text: str,
    step: str,
    today: datetime.date,
    horizon: datetime.date | None,
    menu_size: int,
    skip_option: int | None,
) -> Meaning:
    if step in {"any", "confirm"}:
        return _yes_no(_words(text))
    if step == "agree":
        return _parse_agree(text)
    if step == "plan":
        return _parse_plan(text)
    if step == "contact":
        return _parse_contact(text)
    if step == "amount":
        return _parse_amount(text)
    if step == "date":
        return _parse_date(text, today, horizon)
    if step == "menu":
        return _parse_menu(text, menu_size, skip_option)
    if step == "account_id":
        return _parse_account_id(text)
    if step == "code":
        return _parse_code(text, today)
    return _parse_text(text)
