"""The entry point: what a reply means in a step. Keywords first (they work everywhere),
then the reader the step expects; whatever the text, a Meaning comes back, never an error.
"""

from __future__ import annotations

import datetime
import re

from bot.sms.parsing.amounts import parse_amount
from bot.sms.parsing.answers import parse_agree, yes_no
from bot.sms.parsing.choices import parse_menu, parse_plan
from bot.sms.parsing.contacts import parse_account_id, parse_code, parse_contact
from bot.sms.parsing.dates import parse_date
from bot.sms.parsing.intents import parse_intent
from bot.sms.parsing.keywords import classify_keyword
from bot.sms.parsing.meaning import STEPS, Meaning, invalid
from bot.sms.parsing.words import nfkc, reply_words

MAX_TEXT = 1600  # Twilio's longest inbound body; longer text is refused by the step readers


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

    step: one of STEPS ("idle": the payment flow at rest, where an intent comes with its
    slots: see intents.py). today: the customer's local date. horizon: the furthest date a
    payment may be scheduled (None: no limit). menu: choices 1..menu_size, "skip" means
    skip_option. Never raises on any text; an unknown step is a programming error
    (ValueError).
    """
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; expected one of {STEPS}")
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if not nfkc(text).strip():
        return invalid("empty")
    keyword = classify_keyword(text)
    if keyword is not None:
        return keyword
    if len(text) > MAX_TEXT:
        return invalid("too_long")
    try:
        return _parse_step(text, step, today, horizon, menu_size, skip_option)
    except Exception:  # customer text must never turn into a 500
        return invalid("not_understood")


def _parse_step(
    text: str,
    step: str,
    today: datetime.date,
    horizon: datetime.date | None,
    menu_size: int,
    skip_option: int | None,
) -> Meaning:
    if step == "idle":
        # At rest: PAY with whatever it carries ("pay 50 next friday"), a plan asked for,
        # else yes or no (YES starts a payment too).
        return parse_intent(text, today, horizon) or yes_no(reply_words(text))
    if step in {"any", "confirm"}:
        return yes_no(reply_words(text))
    if step == "agree":
        return parse_agree(text)
    if step == "plan":
        return parse_plan(text)
    if step == "contact":
        return parse_contact(text)
    if step == "amount":
        return parse_amount(text)
    if step == "date":
        return parse_date(text, today, horizon)
    if step == "menu":
        return parse_menu(text, menu_size, skip_option)
    if step == "account_id":
        return parse_account_id(text)
    if step == "code":
        return parse_code(text, today)
    return _parse_text(text)


def _parse_text(text: str) -> Meaning:
    s = re.sub(r"\s+", " ", nfkc(text)).strip()
    return Meaning("text", s) if s else invalid("empty")
