"""What a reply means: the `Meaning` every reader returns, and the names it may carry.

KINDS, REASONS and STEPS are the whole vocabulary between the parser and its callers (the
engine, the flows in states/, the portal's forms).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

KINDS = frozenset(
    {
        "contact",  # web forms only: {"email": ..., "phone": ...}
        "opt_out", "opt_in", "help", "agent", "balance", "link", "menu", "yes", "no", "agree",
        "full", "now", "amount", "date", "choice", "email", "text", "invalid", "ask_agent",
        "plan", "plan_move", "plan_skip", "plan_extra", "wrong_number", "dispute", "hardship",
        "greeting", "spanish", "english",
        # the payment flow at rest (and its amount step): an intent with its slots
        # ("pay 50 next friday": ``pay`` with a PayIntent), a plan asked for ("3 payments")
        "pay", "plan_request",
        "who",  # "who is this": the creditor, the debt-collector disclosure, the support contact
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
    "idle",
    "any", "confirm", "agree", "amount", "date", "menu", "contact", "account_id", "code", "text",
    "plan",
)


@dataclass(frozen=True)
class PayIntent:
    """What a "pay" message carried besides the wish to pay: the amount (cents, or ``full``),
    the date (or ``now``), and why a slot written could not be read (a reason of REASONS:
    the step that asks for it says so and asks again)."""

    amount_cents: int | None = None
    full: bool = False
    day: datetime.date | None = None
    now: bool = False
    amount_problem: str | None = None
    date_problem: str | None = None

    @property
    def has_amount(self) -> bool:
        return self.amount_cents is not None or self.full or self.amount_problem is not None

    @property
    def has_date(self) -> bool:
        return self.day is not None or self.now or self.date_problem is not None


@dataclass(frozen=True)
class Meaning:
    """What a reply means.

    kind: one of KINDS.
    value: cents (int) for amount, a date for date, an int for choice, a str for email and
      text (for the code step a knowledge answer is "LAST4|YYYY-MM-DD"); for pay a PayIntent
      (None: a plain PAY), for plan_request the number of payments asked (or None).
    reason: for invalid, one of REASONS.
    """

    kind: str
    value: int | datetime.date | str | PayIntent | None = None
    reason: str | None = None


def invalid(reason: str) -> Meaning:
    return Meaning("invalid", reason=reason)
