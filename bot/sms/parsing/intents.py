"""Intents with their slots in one message, read where a payment starts (the menu at rest)
and at the amount step: "pay 50", "$40 next friday", "pay it all on the 15th", "can i pay
next friday", "quiero pagar todo el 15"; and a plan asked for: "can i do 3 payments".

Choices worth knowing (each is pinned by tests/test_parsing.py and the corpus):

* A plan asked for (``plan_request``, with the number of payments when one is said) is read
  first: "3 payments", "in installments", "50 a month", "en 3 pagos", "a plazos".
* A pay intent needs a word to pay ("pay", "payment", "pagar", "pago", "i can do 50"), or an
  amount with a currency ("$40", "40 dollars"), or an amount with a date ("40 next friday").
  The dates are read by ``dates.scan_dates`` (day-of-month, weekdays, "next friday", Spanish
  weekdays and number words), what is left by ``amounts.parse_amount`` (FULL, cents, words).
* The whole message must be covered by those slots and words a payer uses ("can i", "i'd
  like to", "please", "quiero", "puedo"): anything else ("why do i have to pay 50") is not an
  intent, and a negation never is ("i can't pay 50 friday").
* "now" without an amount is no slot: "pay now" is a plain PAY (the customer may only mean
  "start"). A slot written but unusable (a past date, two amounts) is kept as the reason the
  step that asks for it gives.
"""

from __future__ import annotations

import datetime
import re

from bot.sms.parsing.amounts import parse_amount
from bot.sms.parsing.dates import decide_date, scan_dates
from bot.sms.parsing.language import looks_spanish
from bot.sms.parsing.meaning import Meaning, PayIntent
from bot.sms.parsing.words import fold, reply_words, spanish_words_to_digits, words_to_digits

_VERBS = frozenset(
    {
        "pay", "paying", "payment", "send", "sending", "put", "pagar", "pago", "pagare",
        "abonar", "abono", "mandar", "enviar", "depositar",
    }
)
_CURRENCY = frozenset({"dollars", "dollar", "bucks", "usd", "dolares", "dolar", "cents"})
_FULL_WORDS = frozenset(
    {
        "full", "all", "everything", "whole", "entire", "total", "rest", "remaining", "payoff",
        "off", "balance", "todo", "completo", "entero", "saldo", "resto", "totalidad",
    }
)
_FILLERS = frozenset(
    {
        # English
        "i", "im", "ill", "id", "ive", "we", "well", "will", "would", "can", "could", "may",
        "might", "want", "wanna", "wanted", "like", "love", "to", "the", "a", "an", "it", "its",
        "that", "this", "my", "me", "of", "for", "on", "by", "at", "in", "before", "toward",
        "towards", "with", "just", "only", "please", "pls", "plz", "ok", "okay", "yes", "yeah",
        "yep", "sure", "so", "then", "and", "also", "hi", "hello", "hey", "thanks", "thank",
        "you", "ty", "thx", "lets", "let", "go", "ahead", "make", "do", "doing", "going",
        "gonna", "try", "able", "be", "is", "am", "are", "possible", "maybe", "how", "about",
        "if", "account", "bill", "debt", "amount", "sum", "or", "instead", "right", "um", "uh",
        "sir", "maam", "down", "schedule", "set", "up", "text", "first", "think", "guess",
        "actually", "now", "good", "great", "should", "need", "needs", "there", "get",
        "due", "card", "have", "what", "pm",
        # Spanish
        "quiero", "queria", "quisiera", "puedo", "podria", "puede", "pueden", "voy", "vamos",
        "al", "de", "del", "el", "la", "lo", "le", "les", "los", "las", "un", "una", "mi",
        "mis", "su", "por", "favor", "si", "hola", "buenos", "buenas", "dias", "tardes",
        "gracias", "solo", "nada", "mas", "hacer", "realizar", "dar", "para", "con", "en",
        "este", "esta", "ese", "esa", "cuenta", "deuda", "yo", "tambien", "entonces",
        "bueno", "claro", "seria", "posible", "se", "es", "o", "y", "ahorita", "hoy", "quiere",
        "deseo", "dia", "once",
    }
)
_NEGATIONS = frozenset(
    {
        "not", "no", "cant", "cannot", "dont", "wont", "couldnt", "never", "nunca", "unable",
        "didnt", "wasnt", "nor", "shouldnt", "isnt", "aren",
    }
)
# "what" stays a filler only in "what if i pay 50"; asked about, it is a question.
_QUESTIONS = re.compile(r"\bwhat (?:is|do|did|does|are|was|were|about)\b|\bhow much\b")
_PAID = re.compile(r"\b(?:already|paid|made|hice|pague|pagado|pagamos)\b")
_NUMBERISH = re.compile(r"^[0-9]+(?:k|st|nd|rd|th|am|pm)?$")

_PLAN_REQUEST = re.compile(
    r"\b(?:"
    r"(?P<n>[0-9]{1,2})\s+(?:monthly\s+|weekly\s+|small\s+|smaller\s+|separate\s+|equal\s+|"
    r"little\s+|mensuales\s+|pequenos\s+)?(?:payments|installments|instalments|pagos|cuotas|"
    r"abonos|plazos|partes|parts|months|meses)|"
    r"installments?|instalments?|in (?:parts|pieces|chunks)|"
    r"split (?:it|this|that|the (?:balance|payment|bill|amount|debt)|my (?:balance|bill|debt))|"
    r"(?:monthly|weekly|biweekly|smaller|small|multiple|several|a few) payments|"
    r"(?:make|do|set up|get|have|start|work out) (?:a )?(?:payments|payment arrangement|"
    r"arrangement|plan|payment plan)|"
    r"payment arrangement|pay (?:it )?over time|"
    r"en cuotas|a cuotas|a plazos|en plazos|en partes|por partes|en pagos|pagos mensuales|"
    r"pagos pequenos|plan de pago|hacer pagos|dividir"
    r")\b"
)
_COUNT = re.compile(
    r"\b([0-9]{1,2})\s+(?:monthly\s+|weekly\s+|small\s+|smaller\s+|separate\s+|equal\s+|"
    r"little\s+|mensuales\s+|pequenos\s+)?(?:payments|installments|instalments|pagos|cuotas|"
    r"abonos|plazos|partes|parts|months|meses)\b"
)
_PER_PERIOD = re.compile(
    r"(?<!in )(?<!within )\b(?:(?:a|per|each|every) (?:month|week|two weeks|paycheck|payday)|"
    r"monthly|weekly|biweekly|al mes|por mes|cada mes|a la semana|por semana|cada semana|"
    r"mensual|mensuales|"
    r"semanal|semanales|quincenal|quincenales|cada quincena)\b"
)
_HOW_ABOUT = re.compile(r"\bhow about\b")
_MONEY = re.compile(
    r"\$\s*[0-9][0-9,]*(?:\.[0-9]{1,2})?|[0-9][0-9,]*\.[0-9]{2}(?![0-9/.-])|"
    r"[0-9][0-9,]*(?:\.[0-9]{1,2})?\s*(?:dollars?|bucks|usd|dolares)\b"
)
_KEPT = re.compile(r"qqqamount([0-9]+)qqq")
# Words a date left behind ("pay in full on [dec 1]"): not part of the amount.
_DANGLING = re.compile(r"\b(?:on|by|at|before|until|around|el|para|antes|del)\b")


def parse_intent(
    text: str, today: datetime.date, horizon: datetime.date | None = None
) -> Meaning | None:
    """A plan asked for, or a pay intent with its slots (a plain PAY has none), or None."""
    tokens = reply_words(text)
    if not tokens or len(tokens) > 30 or any(t in _NEGATIONS for t in tokens):
        return None
    spanish = looks_spanish(text)
    joined = " ".join(tokens)
    if _PAID.search(joined) or _QUESTIONS.search(joined):
        return None
    numbers = words_to_digits(joined, "en")
    if spanish:
        numbers = spanish_words_to_digits(numbers)
    plan = _PLAN_REQUEST.search(numbers)
    if plan is not None or (_PER_PERIOD.search(numbers) and re.search(r"[0-9]", numbers)):
        counted = _COUNT.search(numbers)
        count = int(counted.group(1)) if counted is not None else None
        return Meaning("plan_request", count)

    # Amounts that look like dates to the date rules ("$75.50", "12.15 dollars") are kept
    # aside while the dates are read, then put back for the amount.
    kept: list[str] = []

    def keep(m: re.Match[str]) -> str:
        kept.append(m.group(0))
        return f" qqqamount{len(kept) - 1}qqq "

    found, rest, negated = scan_dates(_MONEY.sub(keep, fold(text)), today, spanish=spanish)
    if negated:
        return None
    rest = _KEPT.sub(lambda m: kept[int(m.group(1))], rest)
    rest = _HOW_ABOUT.sub(" ", rest)
    rest_words = reply_words(spanish_words_to_digits(rest) if spanish else rest)
    if not all(
        w in _FILLERS or w in _VERBS or w in _FULL_WORDS or w in _CURRENCY or _NUMBERISH.match(w)
        for w in rest_words
    ):
        return None
    amount = parse_amount(_DANGLING.sub(" ", spanish_words_to_digits(rest) if spanish else rest))
    cents = int(amount.value) if amount.kind == "amount" else None  # type: ignore[arg-type]
    full = amount.kind == "full"
    amount_problem = (
        amount.reason if amount.kind == "invalid" and amount.reason != "not_understood" else None
    )
    has_amount = cents is not None or full or amount_problem is not None
    verb = bool(_VERBS & set(rest_words)) or ("do" in rest_words and has_amount)
    currency = "$" in fold(text) or bool(_CURRENCY & set(rest_words))
    day: datetime.date | None = None
    now = False
    date_problem = None
    if found:
        when = decide_date(found, today, horizon)
        if when.kind == "date":
            day = when.value  # type: ignore[assignment]
        elif when.kind == "now":
            now = True
        else:
            date_problem = when.reason
    has_date = day is not None or now or date_problem is not None
    if not (verb or (has_amount and (currency or has_date))):
        return None
    if not has_amount and (now or not has_date):
        return Meaning("pay")  # "pay", "quiero pagar", "pay now": a plain PAY
    return Meaning(
        "pay",
        PayIntent(
            amount_cents=cents,
            full=full,
            day=day,
            now=now,
            amount_problem=amount_problem,
            date_problem=date_problem,
        ),
    )
