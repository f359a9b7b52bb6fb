"""The text a customer signs to accept a plan offer: the plan agreement and recurring debit
authorization, with the E-SIGN consent. The same words on the web, by text and in the copy
emailed afterwards; the agreement keeps its SHA-256, so the rendering must be deterministic
(no clock, no randomness, only what the arguments hold and the language of the moment: each
version has one text, and one hash, per language; the English one is unchanged by the catalogs)."""

from __future__ import annotations

from datetime import date
from typing import Any

from jinja2 import Environment

from bot.ledger.models import Account
from bot.money import format_cents
from bot.outreach.email_texts import method_words
from bot.text.rendering import format_day


def plan_agreement_text(
    *,
    env: Environment,
    account: Account,
    offer: Any,
    schedule: list[tuple[date, int]],
    method_label: str,
    method_kind: str | None,
    terms_version: str,
    brand: str,
) -> str:
    """``offer`` is the Offer being signed (only its schedule's total is used, and the total is
    computed from ``schedule`` so the text can never disagree with the installments)."""
    del offer  # the schedule is the offer's contract; kept in the signature for callers
    return (
        env.get_template("legal/plan_authorization.txt")
        .render(
            account=account,
            schedule=schedule,
            total_cents=sum(cents for _, cents in schedule),
            method_label=method_words(method_label),  # "Visa terminada en 4242" in Spanish
            method_kind=method_kind,
            terms_version=terms_version,
            brand=brand,
        )
        .strip()
    )


def plan_summary_lines(schedule: list[tuple[date, int]]) -> list[str]:
    """One short line per installment, e.g. "1. Dec 1, 2026: $100.00", for texts and emails."""
    return [
        f"{n}. {format_day(day)}: {format_cents(cents)}"
        for n, (day, cents) in enumerate(schedule, start=1)
    ]
