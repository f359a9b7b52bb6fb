"""The chaos run's ledger before the load starts: one creditor and its customers, each with a card
saved for real in localstripe, some with offers, some with an active plan whose installments fall
due while the run goes on, a few whose card declines at charge.

Everything is written through the app's own code (bot.accounts.loading, bot.plans), on the
database the harness made (``Database`` migrates it). The one thing the app has no code for is
time passing: a plan's installments are a day apart, so ``InstallmentCalendar`` brings the next
one of each plan forward to today, one plan every few seconds, as the days would.

Imports bot (accounts, plans, ledger, config, the Stripe gateway, localstripe's test helper) and
bench.chaos.stage."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from jinja2 import Environment
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bench.chaos.stage import SECRET_KEY, STRIPE_KEY, Stage
from bot.accounts.loading import parse_account, save_method_at_processor, upsert_account
from bot.config.flow import FlowSettings
from bot.ledger.db import Database
from bot.ledger.models import Account, Creditor, Payment, PaymentMethod
from bot.plans.offers import OfferRequest, create_offer
from bot.plans.signing import Signature, accept_plan_offer
from bot.plans.terms import plan_agreement_text
from bot.providers.localstripe import create_card_method
from bot.providers.stripe_gateway import StripeGateway
from bot.text.rendering import build_environment

CREDITOR = "chaos"
GOOD_CARD = "pm_card_visa"
# Attaches, then fails every charge (402 card_declined): Declined installments and payments.
DECLINING_CARD = "pm_card_chargeCustomerFail"
# localstripe knows no pm_card_mastercard: the second card is made from its test number.
SECOND_CARD_NUMBER = "5555555555554444"
# Where the customers live: the first zone whose clock reads daytime for the whole run (Reg F's
# quiet hours, 9 p.m. to 8 a.m., hold proactive texts and the worker's charges; the run may
# happen at any hour of the day).
DAYTIME_ZONES = (
    "America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "Asia/Tokyo",
    "Australia/Sydney", "Asia/Kolkata", "Asia/Dubai", "Europe/Berlin",
)
PLAN_INSTALLMENTS = 6
INSTALLMENT_CENTS = 3_000


@dataclass
class Customer:
    index: int
    account_ref: str
    account_id: int
    phone: str
    email: str
    balance_cents: int
    timezone: str
    methods: int = 1  # saved cards
    declines: bool = False  # its default card fails at charge
    offers: bool = False  # a settlement and a plan offer (signable by reply)
    plan_id: int | None = None  # an active plan, installments due during the run


def daytime_zone(now: datetime, hours: float = 1.0) -> str:
    """A zone where it is between 9 a.m. and 8 p.m. now and ``hours`` from now (same date)."""
    for name in DAYTIME_ZONES:
        zone = ZoneInfo(name)
        start, end = now.astimezone(zone), (now + timedelta(hours=hours)).astimezone(zone)
        if 9 <= start.hour and end.hour < 20 and start.date() == end.date():
            return name
    return DAYTIME_ZONES[0]  # unreachable: the zones above cover every hour


async def seed(stage: Stage, customers: int, now: datetime, rng: random.Random) -> list[Customer]:
    zone = daytime_zone(now)
    today = now.astimezone(ZoneInfo(zone)).date()
    database = Database(stage.database_url)
    gateway = StripeGateway(STRIPE_KEY, api_base=stage.localstripe_url, max_network_retries=2)
    flow = FlowSettings()
    env = build_environment()
    made: list[Customer] = []
    try:
        await database.migrate()
        async with database.session() as session:
            if await session.get(Creditor, CREDITOR) is None:
                session.add(
                    Creditor(
                        code=CREDITOR,
                        name="Chaos Recovery",
                        disclosure="This is a communication from a debt collector.",
                        support_contact="1-800-555-0100",
                        settings={
                            "schedule_payment": True,
                            "virtual_collection": True,
                            "allow_skip_offer": True,
                            "sms_plan_signing": True,
                            "plan_skips_allowed": 1,
                        },
                    )
                )
                await session.commit()
            creditor = await session.get(Creditor, CREDITOR)
            assert creditor is not None
            limits = flow.for_creditor(creditor)
        for i in range(customers):
            made.append(
                await _one(database, gateway, env, flow, limits, creditor.shown_name, i, now,
                           today, zone, rng)
            )
    finally:
        await gateway.close()
        await database.close()
    return made


async def _one(
    database: Database, gateway: StripeGateway, env: Environment, flow: FlowSettings,
    limits: FlowSettings, brand: str, i: int, now: datetime, today: date, zone: str,
    rng: random.Random,
) -> Customer:
    balance = rng.randrange(300_00, 2_000_00 + 1, 5)
    # Who is who by index, so any --customers of 8 or more has every kind: a quarter with an
    # active plan (one in three of them on a card that declines), three in eight with offers,
    # a few more declining cards, a quarter with a second card.
    kind = i % 8
    customer = Customer(
        index=i, account_ref=f"CHAOS-{i:05d}", account_id=0, phone=f"+1555{8_000_000 + i}",
        email=f"chaos{i}@example.com", balance_cents=balance, timezone=zone,
        declines=i % 24 == 0 or i % 24 == 13, methods=2 if i % 4 == 3 else 1,
        offers=kind in (1, 2, 5),
    )
    async with database.session() as session:
        record = {
            "account_id": customer.account_ref, "first_name": "Chaos", "last_name": f"Tester{i}",
            "phone": customer.phone, "email": customer.email, "balance": f"{balance / 100:.2f}",
            "creditor": CREDITOR, "description": f"Acme Card ending {1000 + i % 9000}",
            "timezone": zone,
        }
        account, _ = await upsert_account(
            session, parse_account(record), secret_key=SECRET_KEY, at=now, actor="chaos"
        )
        await session.commit()  # before the processor: a customer there belongs to this row
        customer.account_id = account.id
        if customer.methods == 2:
            second = await create_card_method(gateway.api_base or "", SECOND_CARD_NUMBER)
            await save_method_at_processor(session, gateway, account, second, at=now)
        first = DECLINING_CARD if customer.declines else GOOD_CARD
        method = await save_method_at_processor(session, gateway, account, first, at=now,
                                                default=True)
        await session.commit()
        if customer.offers:
            await create_offer(
                session, account,
                OfferRequest(kind="settlement", created_by="chaos", discount_bps=3000,
                             expires_in_days=30),
                flow=flow, at=now,
            )
            await create_offer(
                session, account,
                # Half the balance: signed, it leaves room to pay more by text and on the web.
                OfferRequest(kind="plan", created_by="chaos", frequency="monthly",
                             total_cents=balance // 2, start=today + timedelta(days=3),
                             count=rng.choice((3, 4, 6))),
                flow=flow, at=now,
            )
        elif kind in (0, 4):
            await _sign_plan(session, env, account, method, limits, brand, customer, now, today)
    return customer


async def _sign_plan(
    session: AsyncSession, env: Environment, account: Account, method: PaymentMethod,
    limits: FlowSettings, brand: str, customer: Customer, now: datetime, today: date,
) -> None:
    """A plan signed on the web: installments a day apart from today (the calendar brings the
    later ones forward during the run)."""
    schedule = tuple(
        (today + timedelta(days=n), INSTALLMENT_CENTS) for n in range(PLAN_INSTALLMENTS)
    )
    offer = await create_offer(
        session, account,
        OfferRequest(kind="plan", created_by="chaos", schedule=schedule),
        flow=FlowSettings(), at=now,
    )
    text = plan_agreement_text(
        env=env, account=account, offer=offer, schedule=list(schedule),
        method_label=method.description, method_kind=method.kind,
        terms_version=limits.terms_version, brand=brand,
    )
    plan = await accept_plan_offer(
        session, offer=offer, account=account, method=method,
        signature=Signature(kind="typed", data=f"{account.first_name} {account.last_name}",
                            signer_name=f"{account.first_name} {account.last_name}",
                            channel="web", esign_consent_at=now, ip_address="127.0.0.1",
                            user_agent="chaos-seed"),
        agreement_text=text, terms_version=limits.terms_version, at=now,
    )
    customer.plan_id = plan.id


class InstallmentCalendar:
    """Days passing, faster: every ``every`` seconds, one plan's next future installment is
    brought forward to today, so the worker finds installments falling due all through the run
    (the real clock decides only the time of day; a run lasts minutes, not days)."""

    def __init__(self, stage: Stage, customers: list[Customer], *, every: float = 3.0) -> None:
        self.stage = stage
        self.plans = [c for c in customers if c.plan_id is not None]
        self.every = every
        self.moved = 0
        self.errors = 0

    async def run(self, until: float) -> None:
        if not self.plans:
            return
        database = Database(self.stage.database_url)
        turn = 0
        try:
            while time.monotonic() + self.every < until:
                await asyncio.sleep(self.every)
                customer = self.plans[turn % len(self.plans)]
                turn += 1
                try:
                    await self._bring_forward(database, customer)
                except Exception:  # the database restarts under the run: next time
                    self.errors += 1
        finally:
            await database.close()

    async def _bring_forward(self, database: Database, customer: Customer) -> None:
        today = datetime.now(ZoneInfo(customer.timezone)).date()
        async with database.session() as session:
            next_id = await session.scalar(
                select(Payment.id)
                .where(Payment.plan_id == customer.plan_id, Payment.status == "scheduled",
                       Payment.scheduled_for > today)
                .order_by(Payment.scheduled_for).limit(1)
            )
            if next_id is None:
                return
            moved = await session.execute(
                update(Payment)
                .where(Payment.id == next_id, Payment.status == "scheduled")
                .values(scheduled_for=today)
                .execution_options(synchronize_session=False)
            )
            await session.commit()
            self.moved += moved.rowcount or 0  # type: ignore[attr-defined]
