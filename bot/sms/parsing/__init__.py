"""Reading customer replies: keywords, yes/no, amounts, dates, menu choices, emails, codes.

``classify_keyword`` recognises the words that work in every state (STOP, HELP, AGENT...);
``parse_reply`` applies it first, then the reading the current step expects.

The package is pure: no I/O and no clock. ``today`` (the customer's local date) is a
parameter, so the same reply always reads the same way in tests and in production.
Money comes back as integer cents (read through ``Decimal``, never ``float``).

One module per kind of thing read; each one's docstring lists the choices it makes (each
pinned by tests/test_parsing.py and the corpus tests/data/sms_replies.tsv):

* ``reply``: ``parse_reply``, the step dispatch;
* ``keywords``: ``classify_keyword``, the words that work in every step;
* ``intents``: an intent with its slots in one message ("pay 50 next friday", "3 payments");
* ``language``: whether free text reads as Spanish;
* ``answers``: yes, no and agree; ``amounts``: amounts and FULL; ``dates``: dates and NOW;
* ``choices``: menu options and plan changes; ``contacts``: email, account ID, codes;
* ``words``: normalising and phrase tables; ``meaning``: ``Meaning``, KINDS, REASONS, STEPS.

May import: nothing else of PayBot (text2num and dateparser only).
"""

from __future__ import annotations

# The limits were public names of the old module too: still importable from here.
from bot.sms.parsing.amounts import MAX_CENTS as MAX_CENTS
from bot.sms.parsing.dates import PAST_GRACE_DAYS as PAST_GRACE_DAYS
from bot.sms.parsing.intents import parse_intent
from bot.sms.parsing.keywords import classify_keyword
from bot.sms.parsing.meaning import KINDS, REASONS, STEPS, Meaning, PayIntent
from bot.sms.parsing.reply import MAX_TEXT as MAX_TEXT
from bot.sms.parsing.reply import parse_reply

__all__ = [
    "KINDS",
    "REASONS",
    "STEPS",
    "Meaning",
    "PayIntent",
    "classify_keyword",
    "parse_intent",
    "parse_reply",
]
