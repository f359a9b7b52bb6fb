"""One account's world for the money tests: a fresh ledger and app per example, driven only through
the product's public faces (the signed Twilio webhook, the portal's forms, the REST API, signed
Stripe events, `Worker.run_once` under the FrozenClock), and the guarantee read from the ledger.

Each action is what a person or the worker may try; the product may refuse it (that is often the
right answer), so an action follows whatever the product answers and stops where it no longer
leads to the payment asked for. What is checked is the ledger, whole, after every action."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text

from bot import appkeys
from bot.app import create_app
from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Account, Base, Offer, Payment
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms
from tests.conftest import API_KEY, START, SmsPhone
from tests.seed import add_account
from tests.test_portal import csrf_of, state_of, visible_text
from tests.test_stripe_webhooks import intent_event, post_event
from tests.test_worker import NY, local, make_worker

WEBHOOK_SECRET = "whsec_test_paybot_webhooks"  # the secret tests/test_stripe_webhooks signs with
ORIGINAL = 125000  # add_account's $1,250.00; its settlement offer is $800.00
METHODS = {"visa": "Visa ending 4242", "bank": "Bank ending 6789", "declining": "Visa ending 0341"}
ACTIVE = ("paid", "pending", "processing", "scheduled")
IN_HAND = ("paid", "pending", "processing")
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Backend:
    """A fresh, migrated ledger (and an empty Redis) for each example of one test."""

    def __init__(self, settings: Settings, tmp_path: Path, template: Path | None) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.template = template  # the migrated SQLite file, or None on PostgreSQL
        self.examples = 0

    async def fresh(self) -> Settings:
        self.examples += 1
        data_dir = self.tmp_path / f"example{self.examples}"
        data_dir.mkdir()
        if self.template is not None:
            path = data_dir / "paybot.sqlite3"
            shutil.copy(self.template, path)
            return self.settings.replace(database_url=f"sqlite:///{path}", data_dir=data_dir)
        tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
        database = Database(self.settings.database_url)
        try:
            async with database.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            await database.close()
        if self.settings.redis_url:
            client = aioredis.Redis.from_url(self.settings.redis_url)
            await client.flushdb()
            await client.aclose()
        return self.settings.replace(data_dir=data_dir)


@dataclass
class Ledger:
    balance: int
    payments: list[Payment]
    settlement_offers: set[int]

    def is_settlement(self, payment: Payment) -> bool:
        return payment.offer_id in self.settlement_offers

    def lines(self) -> str:
        return "\n".join(
            f"  #{p.id} {p.status:<10} {p.amount_cents:>7} "
            f"{'settlement' if self.is_settlement(p) else 'plan' if p.plan_id else 'one-off'}"
            f"{f' installment {p.installment_number}' if p.installment_number else ''}"
            f" on {p.scheduled_for} via {p.channel}"
            for p in self.payments
        )


@dataclass
class World:
    app: Any
    client: TestClient
    clock: FrozenClock
    gateway: SandboxGateway
    phone: SmsPhone
    log: list[str] = field(default_factory=list)
    # What a Paid, Pending or Processing settlement settled: everything not yet in hand when it
    # was first seen (it settles the account in full, so it counts as that much).
    settled_by: dict[int, int] = field(default_factory=dict)
    sent_events: list[dict[str, Any]] = field(default_factory=list)
    fates: dict[str, str] = field(default_factory=dict)  # processor id -> its final event

    # ------------------------------------------------------------------ the ledger, read

    async def ledger(self) -> Ledger:
        async with self.app[appkeys.DATABASE].session() as session:
            balance = await session.scalar(select(Account.balance_cents))
            payments = list(await session.scalars(select(Payment).order_by(Payment.id)))
            settlements = set(
                await session.scalars(select(Offer.id).where(Offer.kind == "settlement"))
            )
        return Ledger(int(balance), payments, settlements)

    async def check(self) -> None:
        """The money guarantee, over the whole ledger, after every action."""
        ledger = await self.ledger()
        others = [p for p in ledger.payments if not ledger.is_settlement(p)]
        for p in ledger.payments:
            if ledger.is_settlement(p) and p.status in IN_HAND and p.id not in self.settled_by:
                self.settled_by[p.id] = ORIGINAL - sum(
                    q.amount_cents - q.refunded_cents for q in others if q.status in IN_HAND
                )
        # A payment still Scheduled under a settlement on its way is held, never charged: it is
        # owed again only if the settlement's bank debit fails, and is canceled once it is Paid.
        on_its_way = any(
            ledger.is_settlement(p) and p.status in ("pending", "processing")
            for p in ledger.payments
        )
        counted = IN_HAND if on_its_way else ACTIVE
        # A refund gives back what was taken: counted net of it (and the balance rose by it).
        promised = sum(p.amount_cents - p.refunded_cents for p in others
                       if p.status in counted) + sum(
            self.settled_by[p.id]
            for p in ledger.payments
            if ledger.is_settlement(p) and p.status in IN_HAND
        )
        story = "\n".join(self.log)
        assert promised <= ORIGINAL, (
            f"taken or promised {promised} on {ORIGINAL} owed\n{ledger.lines()}\n{story}"
        )
        settled = any(ledger.is_settlement(p) and p.status == "paid" for p in ledger.payments)
        expected = (
            0 if settled else ORIGINAL - sum(p.amount_cents - p.refunded_cents
                                             for p in others if p.status == "paid")
        )
        assert ledger.balance == expected, (
            f"balance {ledger.balance}, expected {expected}\n{ledger.lines()}\n{story}"
        )

    # ------------------------------------------------------------------ SMS

    async def sms(self, body: str) -> str:
        replies = await self.phone.send(body)
        reply = "\n".join(replies)
        self.log.append(f"    > {body}\n    < {reply}")
        return reply

    async def converse(self, first: str, answer: Any) -> str:
        """Starts over (MENU), sends `first`, then answers each reply with `answer(reply)` (the step
        it answers, and what it says) until it has nothing to say or a step is asked again: the
        product decides where the conversation goes."""
        await self.sms("MENU")
        reply = await self.sms(first)
        answered: set[str] = set()
        for _ in range(12):
            said = answer(reply)
            if said is None:
                return reply
            step, words = said
            if step in answered:  # asked again: what was asked for was refused
                return reply
            answered.add(step)
            reply = await self.sms(words)
        raise AssertionError(f"the conversation never ended:\n{reply}")

    async def sms_pay(self, *, amount: int | None, method: str, day: date | None,
                      offer: str | None = None) -> None:
        def answer(reply: str) -> tuple[str, str] | None:
            if "Reply OK, or send a new email" in reply:
                return "contact", "ok"
            if "Offers for you" in reply:
                wanted = {
                    "settlement": r"(\d)\) Pay \$[\d,.]+[^)]* and settle in full",
                    "plan": r"(\d)\) \d+ monthly payments",
                    None: r"(\d)\) Skip",
                }[offer]
                found = re.search(wanted, reply)
                return ("offer", found[1]) if found else None
            if reply.startswith("How much would you like to pay?") or "Reply an amount" in reply:
                return None if offer or amount is None else ("amount", cents_text(amount))
            if "Pay with" in reply or "Which payment method?" in reply:
                found = re.search(rf"(\d) for {re.escape(METHODS[method])}", reply)
                return ("method", found[1]) if found else None
            if "Pay now or later?" in reply or "Reply NOW, or a date" in reply:
                return "date", "now" if day is None else f"{day.month}/{day.day}"
            if reply.startswith("Confirm:") or "\nConfirm:" in reply:
                return "confirm", "yes"
            if "Reply AGREE" in reply:
                return "agree", "agree"
            return None

        await self.converse("pay", answer)

    async def extra(self, amount: int) -> None:
        def answer(reply: str) -> tuple[str, str] | None:
            if "How much extra would you like to pay" in reply:
                return "amount", cents_text(amount)
            if re.search(r"Pay \$[\d,.]+ now from .*Reply YES", reply):
                return "confirm", "yes"
            return None

        await self.converse("EXTRA", answer)

    async def sign_plan_by_text(self) -> None:
        def answer(reply: str) -> tuple[str, str] | None:
            return ("agree", "agree") if "Reply AGREE to sign" in reply else None

        await self.converse("PLAN", answer)

    # ------------------------------------------------------------------ web

    async def web_pay(self, *, amount: int | None, method: str, day: date | None,
                      offer: str | None = None) -> None:
        menu = await self.sms("MENU")  # starts over, on both channels, and shows the link
        found = re.search(r"https://paybot\.test(/p/\S+)", menu)
        if found is None:
            self.log.append("    (no link in the menu)")
            return
        html = await self.web_get(found[1])
        for _ in range(12):
            if 'name="state"' not in html:
                return
            state = state_of(html)
            data: dict[str, str]
            if state == "idle":
                data = {"action": "start"}
            elif state == "contact_review":
                data = {"action": "continue"}
            elif state == "offers":
                choice = offer_choice(html, offer)
                if choice is None:
                    return
                data = {"action": "continue", "choice": choice}
            elif state == "amount":
                if offer or amount is None:
                    return
                data = {"action": "continue", "amount": cents_text(amount)}
            elif state in ("method", "awaiting_method"):
                choice = method_choice(html, METHODS[method])
                if choice is None:
                    return
                data = {"action": "continue", "choice": choice}
            elif state == "schedule":
                data = {"action": "now"} if day is None else {
                    "action": "later", "date": day.isoformat()}
            elif state in ("confirm", "agreement"):  # the one final step
                data = {"action": "pay", "consent": "yes"}
            else:
                return
            before = html
            html = await self.web_post("/portal/pay", {**data, "state": state,
                                                        "csrf_token": csrf_of(html)})
            if 'name="state"' in html and state_of(html) == state and html == before:
                return

    async def web_get(self, path: str) -> str:
        response = await self.client.get(path)
        html = await response.text()
        assert response.status < 500, (response.status, visible_text(html)[:400])
        self.log.append(f"    GET {path} -> {response.status}")
        return html

    async def web_post(self, path: str, data: dict[str, str]) -> str:
        response = await self.client.post(path, data=data)
        html = await response.text()
        assert response.status < 500, (response.status, visible_text(html)[:400])
        shown = {k: v for k, v in data.items() if k != "csrf_token"}
        notice = re.search(r'class="notice[^"]*"[^>]*>([^<]+)<', html)
        self.log.append(
            f"    POST {path} {shown} -> {response.status}"
            f"{' ' + notice[1] if notice else ''}"
        )
        return html

    # ------------------------------------------------------------------ agent, worker, Stripe

    async def agent_plan_offer(self, count: int, first: date) -> None:
        body = {"kind": "plan", "frequency": "monthly", "count": count,
                "start_date": first.isoformat(), "created_by": "agent:prop"}
        response = await self.client.post(
            "/api/v1/accounts/ACC-1001/offers", data=json.dumps(body),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        answer = await response.text()
        assert response.status < 500, answer
        self.log.append(f"    API plan offer {body} -> {response.status}")

    async def run_worker(self, days: int) -> None:
        self.clock.set(local(self.today() + timedelta(days=days), 10))
        report = await make_worker(self.app).run_once()
        done = {name: n for name, n in vars(report).items() if n}
        self.log.append(f"    worker on {self.today()}: {done or 'nothing to do'}")

    async def stripe_event(self, pick: int, outcome: str, kind: str) -> None:
        """A signed Stripe event about one of the payments the processor holds: its outcome
        (decided once per payment: a bank debit settles or fails), a `processing` event out of
        order, or an event delivered again."""
        if kind == "again":
            if self.sent_events:
                event = self.sent_events[pick % len(self.sent_events)]
                status, _ = await post_event(self.client, event)
                assert status == 200, status
                self.log.append(f"    Stripe again {event['type']} {event['data']['object']['id']}")
            return
        ledger = await self.ledger()
        charged = [p for p in ledger.payments if p.processor_id]
        if not charged:
            return
        payment = charged[pick % len(charged)]
        if payment.status == "declined":
            fate = "payment_intent.payment_failed"
        elif payment.status == "paid":
            fate = "payment_intent.succeeded"
        else:
            fate = "payment_intent.succeeded" if outcome == "settles" else (
                "payment_intent.payment_failed")
        fate = self.fates.setdefault(payment.processor_id, fate)
        if fate == "payment_intent.succeeded" and any(
            c.processor_id == payment.processor_id and c.status == "pending"
            for c in self.gateway.charges
        ):
            self.gateway.settle(payment.processor_id)  # the bank settled: the processor knows
        event_type = "payment_intent.processing" if kind == "processing" else fate
        event = intent_event(
            event_type, payment.processor_id, amount=payment.amount_cents,
            reference=payment.reference,
            failure_code="insufficient_funds" if payment.status != "declined" else None,
        )
        status, _ = await post_event(self.client, event)
        assert status == 200, status
        self.sent_events.append(event)
        self.log.append(f"    Stripe {event_type} for #{payment.id} ({payment.status})")

    async def refund(self, pick: int, share: str) -> None:
        """A supervisor refunds the pick-th Paid payment that is no settlement, all that is left
        of it or half, while no settlement is in hand (what a refund does to a settled account
        is the creditor's call: bot/payments/refunds.py). Asked twice: the second is the same
        request and must refund nothing more."""
        from bot.payments.refunds import MoneyOperationError, refund_payment

        ledger = await self.ledger()
        if any(ledger.is_settlement(p) and p.status in IN_HAND for p in ledger.payments):
            return
        paid = [p for p in ledger.payments if p.status == "paid" and not ledger.is_settlement(p)]
        if not paid:
            return
        payment = paid[pick % len(paid)]
        left = payment.amount_cents - payment.refunded_cents
        amount = None if share == "all" else max(1, left // 2)
        for _ in range(2):
            try:
                done = await refund_payment(
                    self.app[appkeys.DATABASE], self.gateway, reference=payment.reference,
                    actor="staff:property", clock=self.clock, amount_cents=amount,
                    notifier=self.app[appkeys.ENGINE].notifier,
                )
            except MoneyOperationError as exc:
                self.log.append(f"    refund of #{payment.id} refused: {exc}")
                return
            self.log.append(f"    refund {done.amount_cents} of #{payment.id}: {done.status}"
                            f"{' (repeated)' if done.repeated else ''}")

    def today(self) -> date:
        return self.clock.now().astimezone(NY).date()


def cents_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def offer_choice(html: str, offer: str | None) -> str | None:
    for value, label in re.findall(
        r'name="choice" value="(\d+)"[^>]*>\s*(.*?)</label>', html, re.S
    ):
        label = " ".join(label.split())
        if (offer == "settlement" and "settle in full" in label) or (
            offer == "plan" and "payments of" in label
        ) or (offer is None and "Choose my own amount" in label):
            return value
    return None


def method_choice(html: str, wanted: str) -> str | None:
    for value, label in re.findall(r'name="choice" value="(\d+)"[^>]*>\s*([^<]*)</label>', html):
        if label.strip().startswith(wanted):
            return value
    return None


@asynccontextmanager
async def world(backend: Backend) -> AsyncIterator[World]:
    settings = await backend.fresh()
    clock = FrozenClock(START)
    gateway = SandboxGateway()
    providers = Providers(
        sms=SandboxSms(), email=SandboxEmail(settings.outbox_dir / "email"), payments=gateway
    )
    app = create_app(settings, providers, clock)
    server = TestServer(app)
    await server.start_server()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = TestClient(server, cookie_jar=jar)
    await client.start_server()
    try:
        await add_account(
            app, offers=True, methods=("pm_card_visa", "pm_usBankAccount",
                                       "pm_card_chargeCustomerFail"),
        )
        yield World(app=app, client=client, clock=clock, gateway=gateway,
                    phone=SmsPhone(client=client, number="+15555550100"))
    finally:
        await client.close()
        await providers.close()
