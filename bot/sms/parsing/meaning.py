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


def invalid(reason: str) -> Meaning:
    return Meaning("invalid", reason=reason)
