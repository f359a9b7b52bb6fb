"""Putting accounts, offers and saved methods into a test's ledger, the way operators do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot import appkeys
from bot.accounts.loading import add_offers, parse_account, save_method_at_processor, upsert_account
from bot.ledger.models import Account, Creditor

# The replies that take a seeded account (saved Visa, no offers) to AGREE for $50.00 now.
CONFIRM_STEPS = ["pay", "ok", "50", "1", "now", "yes"]


async def add_account(
    app: web.Application,
    *,
    ref: str = "ACC-1001",
    phone: str | None = "+15555550100",
    email: str | None = "maria@example.com",
    balance: str = "1250.00",
    first_name: str = "Maria",
    methods: tuple[str, ...] = ("pm_card_visa",),
    offers: bool = False,
    creditor_settings: dict[str, Any] | None = None,
    ssn: str | None = None,
    dob: str | None = None,
    timezone: str = "America/New_York",
    language: str | None = None,
) -> Account:
    database = app[appkeys.DATABASE]
    gateway = app[appkeys.PROVIDERS].payments
    now = app[appkeys.CLOCK].now()
    async with database.session() as session:
        if await session.get(Creditor, "northwind") is None:
            session.add(
                Creditor(
                    code="northwind",
                    name="Northwind Recovery",
                    disclosure="This is a communication from a debt collector.",
                    settings=creditor_settings or {},
                )
            )
            await session.flush()
        record = {
            "account_id": ref,
            "first_name": first_name,
            "last_name": "Lopez",
            "phone": phone,
            "email": email,
            "balance": balance,
            "creditor": "northwind",
            "description": "Acme Card ending 4821",
            "timezone": timezone,
            "ssn": ssn,
            "dob": dob,
            "language": language,
        }
        account, _ = await upsert_account(
            session, parse_account(record), secret_key="test-secret-key", at=now, actor="test"
        )
        for n, method_ref in enumerate(methods):
            await save_method_at_processor(
                session, gateway, account, method_ref, at=now, default=n == 0
            )
        if offers:
            add_offers(
                session,
                account,
                settlement_cents=80000,
                settlement_expires_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
                plan_installments=6,
                at=now,
            )
        await session.commit()
        return account
