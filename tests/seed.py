"""Putting accounts, offers and saved methods into a test's ledger, the way operators do."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot import appkeys
from bot.accounts import parse_account, upsert_account
from bot.models import Account, Creditor, Offer, PaymentMethod


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
        }
        account, _ = await upsert_account(
            session, parse_account(record), secret_key="test-secret-key", at=now, actor="test"
        )
        account.processor_customer_id = await gateway.ensure_customer(
            account_ref=ref, name=f"{first_name} Lopez", email=email, existing_id=None
        )
        for n, ref_ in enumerate(methods):
            saved = await gateway.save_method(
                customer_id=account.processor_customer_id, method_ref=ref_
            )
            session.add(
                PaymentMethod(
                    account_id=account.id,
                    processor_ref=saved.processor_ref,
                    kind=saved.kind,
                    brand=saved.brand,
                    last4=saved.last4,
                    is_default=n == 0,
                    created_at=now,
                )
            )
        if offers:
            session.add(
                Offer(
                    account_id=account.id,
                    kind="settlement",
                    total_cents=80000,
                    expires_at=datetime(2026, 12, 31, 23, 0, tzinfo=UTC),
                    created_at=now,
                )
            )
            session.add(
                Offer(
                    account_id=account.id,
                    kind="plan",
                    total_cents=125000,
                    installment_count=6,
                    frequency="monthly",
                    created_at=now,
                )
            )
        await session.commit()
        return account
