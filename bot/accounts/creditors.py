"""Creditors as an operator keeps them: the name and Reg F disclosure customers read, and the
flow settings their accounts run under, changed key by key, checked before anything is written
(a bad key is named with the reason) and audited with who changed what.

Values come as text (a command line, later a form): JSON where it parses (`true`, `5`,
`["card"]`, `null`), a comma list for the list settings, otherwise the text itself; an empty
value removes the creditor's own setting, so the default applies again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.flow import (
    FlowSettings,
    InvalidCreditorSettings,
    check_creditor_settings,
)
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Creditor
from bot.text.gsm7 import has_control_characters, is_gsm7

NAME_MAX = 120
DISCLOSURE_MAX = 1000
SUPPORT_MAX = 200
BRAND_MAX = NAME_MAX  # the columns' lengths
# What customers read besides the settings: who writes (brand, else name), where to reach a
# person, and the Reg F disclosure.
TEXT_LIMITS = {"brand": BRAND_MAX, "support_contact": SUPPORT_MAX, "disclosure": DISCLOSURE_MAX}
LIST_KEYS = {"methods_enabled", "reminder_days_before"}


class UnknownCreditor(LookupError):
    """No creditor with that code."""


@dataclass(frozen=True)
class CreditorView:
    creditor: Creditor
    accounts: int
    settings: FlowSettings  # what its accounts run under: the defaults with its own settings

    def own(self, key: str) -> bool:
        return key in (self.creditor.settings or {})


def setting_value(key: str, text: str) -> Any:
    """The value an operator typed, as the setting holds it (checked afterwards)."""
    try:
        return json.loads(text)
    except ValueError:
        if key in LIST_KEYS:
            return [_number_or_text(part.strip()) for part in text.split(",") if part.strip()]
        return text


def _number_or_text(part: str) -> Any:
    return int(part) if part.isdigit() else part


async def list_creditors(session: AsyncSession, defaults: FlowSettings) -> list[CreditorView]:
    counts = dict(
        (
            await session.execute(
                select(Account.creditor_code, func.count()).group_by(Account.creditor_code)
            )
        ).all()
    )
    creditors = await session.scalars(select(Creditor).order_by(Creditor.code))
    return [
        CreditorView(c, counts.get(c.code, 0), defaults.for_creditor(c)) for c in creditors
    ]


async def creditor_view(session: AsyncSession, code: str, defaults: FlowSettings) -> CreditorView:
    creditor = await session.get(Creditor, code)
    if creditor is None:
        raise UnknownCreditor(code)
    accounts = await session.scalar(
        select(func.count()).select_from(Account).where(Account.creditor_code == code)
    )
    return CreditorView(creditor, accounts or 0, defaults.for_creditor(creditor))


async def change_creditor(
    session: AsyncSession, code: str, changes: Mapping[str, str], *, actor: str, at: datetime
) -> Creditor:
    """Apply `changes` (key -> text) all together or not at all; the caller commits.

    Raises UnknownCreditor, or InvalidCreditorSettings naming every bad key."""
    creditor = await session.get(Creditor, code, with_for_update=True)
    if creditor is None:
        raise UnknownCreditor(code)
    problems: dict[str, str] = {}
    texts: dict[str, str] = {}
    settings = dict(creditor.settings or {})
    for key, text in changes.items():
        if has_control_characters(text):
            problems[key] = "must not contain control characters"
            continue
        if key == "name":
            if not text.strip() or len(text) > NAME_MAX:
                problems[key] = f"must be 1 to {NAME_MAX} characters"
            texts[key] = text.strip()
        elif key in TEXT_LIMITS:
            if len(text) > TEXT_LIMITS[key]:
                problems[key] = f"must be at most {TEXT_LIMITS[key]} characters"
            elif key != "disclosure" and not is_gsm7(" ".join(text.split())):
                # Both go into texts: one character outside GSM-7 would make every message
                # UCS-2, 70 characters a segment.
                problems[key] = "must use only characters a text message carries plainly"
            texts[key] = " ".join(text.split()) if key != "disclosure" else text.strip()
        elif text == "":
            settings.pop(key, None)
        else:
            settings[key] = setting_value(key, text)
    try:
        settings = check_creditor_settings(settings)
    except InvalidCreditorSettings as exc:
        problems.update(exc.problems)
    if problems:
        raise InvalidCreditorSettings(problems)
    for key, text in texts.items():
        setattr(creditor, key, text)
    creditor.settings = settings
    await ledger.audit(session, "creditor_changed", at=at, actor=actor, creditor=code,
                       changes=dict(changes))
    return creditor

