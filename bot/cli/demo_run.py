"""What `paybot demo` runs: the demo's accounts and offers seeded, localstripe and the server
started, a conversation and the plan journeys walked through by the real engine, then the terminal
handed over (`paybot chat`'s loop). Imported only when the demo runs: it needs the whole app."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import sys
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from aiohttp import web
from dateutil.relativedelta import relativedelta
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.accounts.loading import add_offers, parse_account, save_method_at_processor, upsert_account
from bot.accounts.second_factor import account_subject
from bot.app import create_app
from bot.cli.chat import chat_loop, made_up_sid
from bot.cli.demo import PortBusy, announce, command, withdraw
from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import (
    Agreement,
    CodeSend,
    Conversation,
    Creditor,
    Link,
    Message,
    Offer,
    Outreach,
    Payment,
    PaymentMethod,
    Plan,
    VerificationAttempt,
    WebSession,
)
from bot.money import format_cents
from bot.payments.service import STATUS_LABELS
from bot.plans.offers import OfferRequest, account_zone, create_offer
from bot.providers import Providers, build_providers
from bot.providers.payments import PaymentGateway
from bot.sms.engine import ConversationEngine, Inbound

DEMO_CREDITOR = {
    "code": "northwind",
    "name": "Northwind Recovery",
    "disclosure": "This is a communication from a debt collector.",
}
# The demo's creditor takes PayPal too (the sandbox PayPal: its button approves at once).
DEMO_CREDITOR_SETTINGS = {"methods_enabled": ["card", "us_bank_account", "paypal"]}
DEMO_ACCOUNTS = [
    # (record, test payment method or None, offers)
    (
        {
            "account_id": "DEMO-1001",
            "first_name": "Maria",
            "last_name": "Lopez",
            "phone": "+15555550100",
            "email": "maria@example.com",
            "balance": "1250.00",
            "ssn": "123-45-6789",
            "dob": "1985-04-12",
            "zip": "10001",
            "timezone": "America/New_York",
            "creditor": "northwind",
            "description": "Acme Card ending 4821",
        },
        "pm_card_visa",
        True,
    ),
    (
        {
            "account_id": "DEMO-1002",
            "first_name": "James",
            "last_name": "Chen",
            "phone": "+15555550101",
            "email": "james@example.com",
            "balance": "340.00",
            "timezone": "America/Chicago",
            "creditor": "northwind",
            "description": "Lakeside Medical bill 2231",
        },
        None,
        False,
    ),
    (
        {
            "account_id": "DEMO-1003",
            "first_name": "Ana",
            "last_name": "Silva",
            "phone": "+15555550102",
            "email": "ana@example.com",
            "balance": "500.00",
            "timezone": "America/Los_Angeles",
            "creditor": "northwind",
            "description": "City Power account 7781",
        },
        "pm_card_chargeCustomerFail",
        False,
    ),
]
WALKTHROUGH = ["pay", "ok", "3", "$50", "1", "now", "yes", "agree", "balance"]
PLAN_WALKTHROUGH = ["plan", "agree"]
# Journeys 3 to 5: who gets a plan offer, and how it reaches them (None: they text PLAN).
DEMO_PLAN_OFFERS = [("DEMO-1001", None), ("DEMO-1003", None), ("DEMO-1002", "both")]


async def seed(app: web.Application) -> None:
    """Idempotent: re-running the demo updates the same accounts."""
    database = app[appkeys.DATABASE]
    settings = app[appkeys.SETTINGS]
    gateway: PaymentGateway = app[appkeys.PROVIDERS].payments
    now = app[appkeys.CLOCK].now()
    async with database.session() as session:
        creditor = await session.get(Creditor, DEMO_CREDITOR["code"])
        if creditor is None:
            session.add(Creditor(**DEMO_CREDITOR, settings=dict(DEMO_CREDITOR_SETTINGS)))
            await session.flush()
        elif "paypal" not in (creditor.settings or {}).get("methods_enabled", ()):
            # A demo database from before PayPal: the creditor takes it from now on.
            creditor.settings = {**(creditor.settings or {}), **DEMO_CREDITOR_SETTINGS}
        for record, method_ref, with_offers in DEMO_ACCOUNTS:
            account, _ = await upsert_account(
                session, parse_account(record), secret_key=settings.secret_key, at=now, actor="demo"
            )
            await reset_history(session, account.id)
            if method_ref:
                await save_method_at_processor(session, gateway, account, method_ref, at=now)
            if with_offers:
                expires = datetime(now.year, 12, 31, 23, 59, tzinfo=UTC)
                if expires <= now:
                    expires = now + timedelta(days=30)
                add_offers(
                    session,
                    account,
                    settlement_cents=80000,
                    settlement_expires_at=expires,
                    plan_installments=6,
                    at=now,
                )
        await session.commit()


DEMO_AGENT = ("agent@paybot.demo", "Demo Agent", "demo-agent-password")
DEMO_SUPERVISOR = ("supervisor@paybot.demo", "Demo Supervisor")


async def seed_staff(app: web.Application) -> list[str]:
    """The demo's console staff: an agent with a known password, and a supervisor given a fresh
    setup link each run (a supervisor's second factor is enrolled there). How to sign in."""
    from bot.staff import accounts

    settings = app[appkeys.SETTINGS]
    now = app[appkeys.CLOCK].now()
    email, name, password = DEMO_AGENT
    async with app[appkeys.DATABASE].session() as session:
        if await accounts.by_email(session, email) is None:
            await accounts.add(session, email, name, "agent", at=now, by="demo",
                               password=password)
        if await accounts.by_email(session, DEMO_SUPERVISOR[0]) is None:
            await accounts.add(session, *DEMO_SUPERVISOR, "supervisor", at=now, by="demo")
        token = await accounts.reset(session, DEMO_SUPERVISOR[0], at=now, by="demo")
        await session.commit()
    return [
        f"\nThe staff console: {settings.public_base_url}/agent/login",
        f"  agent: {email} / {password}",
        f"  supervisor: set a password and the authenticator app at "
        f"{settings.public_base_url}{accounts.setup_path(token)}",
    ]


async def reset_history(session: AsyncSession, account_id: int) -> None:
    """A demo run starts its accounts afresh: localstripe starts empty, so saved methods and
    payments of an earlier run point at nothing. Only demo accounts are touched."""
    conversations = select(Conversation.id).where(Conversation.account_id == account_id)
    for table, condition in [
        (Outreach, Outreach.account_id == account_id),
        (Agreement, Agreement.account_id == account_id),
        (Payment, Payment.account_id == account_id),
        (Plan, Plan.account_id == account_id),
        (PaymentMethod, PaymentMethod.account_id == account_id),
        (Message, Message.conversation_id.in_(conversations)),
        (Conversation, Conversation.account_id == account_id),
        (
            WebSession,
            (WebSession.account_id == account_id) | (WebSession.pending_account_id == account_id),
        ),
        (Link, Link.account_id == account_id),
        (Offer, Offer.account_id == account_id),
        (VerificationAttempt, VerificationAttempt.account_id == account_id),
        (CodeSend, CodeSend.cap_key == account_subject(account_id)),  # a fresh code allowance
    ]:
        await session.execute(delete(table).where(condition))


async def demo_link(app: web.Application, account_ref: str) -> str:
    settings = app[appkeys.SETTINGS]
    async with app[appkeys.DATABASE].session() as session:
        account = await ledger.account_by_ref(session, account_ref)
        assert account is not None
        token = await ledger.create_link(
            session,
            account_id=account.id,
            at=app[appkeys.CLOCK].now(),
            lifetime=timedelta(hours=settings.link_lifetime_hours),
            purpose="demo",
        )
        await session.commit()
    return f"{settings.public_base_url}/p/{token}"


async def walkthrough(  # type: ignore[no-untyped-def]
    engine: ConversationEngine,
    phone: str,
    out=sys.stdout,
    *,
    texts: list[str] = WALKTHROUGH,
    name: str = "Maria",
) -> None:
    for n, text in enumerate(texts, start=1):
        print(f"  {name + ':':<7} {text}", file=out)
        for reply in await engine.receive(
            Inbound(phone=phone, body=text, sid=made_up_sid("demo", n))
        ):
            print("  PayBot: " + reply.replace("\n", "\n          "), file=out)


async def make_plan_offers(app: web.Application) -> dict[str, Offer]:
    """A 3-payment monthly plan offer for each demo account, the first payment a week from now
    (the customer's date), made the way an agent or operator makes one (`paybot plans create`)."""
    settings = app[appkeys.SETTINGS]
    now = app[appkeys.CLOCK].now()
    made: dict[str, Offer] = {}
    async with app[appkeys.DATABASE].session() as session:
        for ref, send_via in DEMO_PLAN_OFFERS:
            account = await ledger.account_by_ref(session, ref)
            assert account is not None
            start = now.astimezone(account_zone(account)).date() + timedelta(days=7)
            request = OfferRequest(
                kind="plan", created_by="demo", frequency="monthly", start=start, count=3,
                send_via=send_via,
            )
            made[ref] = await create_offer(session, account, request, flow=settings.flow, at=now)
    return made


async def plan_link(app: web.Application, offer: Offer) -> str:
    """The "Complete Payment Agreement" link of an offer (the worker mints one for each message
    it sends; the demo prints one of its own)."""
    settings = app[appkeys.SETTINGS]
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        token = await ledger.create_link(
            session,
            account_id=offer.account_id,
            at=now,
            lifetime=(offer.expires_at or now + timedelta(days=1)) - now,
            purpose="plan_offer",
            offer_id=offer.id,
        )
        await session.commit()
    return f"{settings.public_base_url}/p/{token}"


async def plan_statuses(app: web.Application) -> list[str]:
    """Each demo plan's installments as a customer would see them (Paid, Declined, ...)."""
    lines = []
    async with app[appkeys.DATABASE].session() as session:
        for ref, _ in DEMO_PLAN_OFFERS:
            account = await ledger.account_by_ref(session, ref)
            assert account is not None
            plans = await session.scalars(select(Plan).where(Plan.account_id == account.id))
            for plan in plans:
                installments = await session.scalars(
                    select(Payment)
                    .where(Payment.plan_id == plan.id, Payment.installment_number.is_not(None))
                    .order_by(Payment.installment_number)
                )
                shown = ", ".join(
                    f"{p.scheduled_for:%b} {p.scheduled_for.day} {format_cents(p.amount_cents)} "
                    f"{STATUS_LABELS.get(p.status, p.status)}"
                    for p in installments
                )
                lines.append(f"{account.first_name} ({ref}): {shown}")
    return lines


async def plans_demo(
    app: web.Application, settings: Settings, out=sys.stdout  # type: ignore[no-untyped-def]
) -> datetime:
    """Journeys 3 to 5: offers signed by text and on the web, then the worker with the clock
    moved to the first due date: Paid and Declined installments, receipts and a reminder."""
    from bot.worker.loop import WorkerConfig, run_worker

    engine = app[appkeys.ENGINE]
    offers = await make_plan_offers(app)
    print("\nPayment plans. An agent offered each customer 3 monthly payments "
          f"({command()} plans create ...).\nMaria signs hers by text:\n", file=out)
    await walkthrough(engine, "+15555550100", out, texts=PLAN_WALKTHROUGH)
    print("\nAna too (her saved card will be declined):\n", file=out)
    await walkthrough(engine, "+15555550102", out, texts=PLAN_WALKTHROUGH, name="Ana")
    print("\nThe worker sends James his offer by text and email "
          "(unless it is night where he lives: then at 8 a.m. his time):", file=out)
    await run_worker(settings, WorkerConfig(), once=True)
    # At night in James's zone the offer waits for 8 a.m. there: the demo passes that morning
    # too, so the walkthrough shows the same messages whatever the hour it runs at.
    morning = next_morning(app[appkeys.CLOCK].now(), ZoneInfo("America/Chicago"))
    if morning is not None:
        await run_worker(settings, WorkerConfig(), once=True, clock=FrozenClock(morning))
    link = await plan_link(app, offers["DEMO-1002"])
    print(f"Sign James's plan on the web (a card, then a typed or drawn signature): {link}",
          file=out)
    first_due = date.fromisoformat(offers["DEMO-1001"].schedule[0][0])  # type: ignore[index]
    moved = datetime.combine(first_due, time(12, 0), ZoneInfo("America/New_York"))  # returned
    print(f"\nThe clock moves to {first_due:%b} {first_due.day}, noon in New York "
          f"({command()} worker --once --at ...):", file=out)
    await run_worker(settings, WorkerConfig(), once=True, clock=FrozenClock(moved))
    for line in await plan_statuses(app):
        print(f"  {line}", file=out)
    print(
        "Receipts, the decline notice with a link to update the card, the reminder to James and "
        "the signed agreements (PDF) are in the outbox.",
        file=out,
    )
    return moved


def next_morning(now: datetime, zone: ZoneInfo) -> datetime | None:
    """9 a.m. in `zone` after `now` when it is night there now (before 8 a.m. or from 9 p.m.),
    else None: the moment a proactive message held for the night goes out."""
    local = now.astimezone(zone)
    if 8 <= local.hour < 21:
        return None
    day = local.date() if local.hour < 8 else local.date() + timedelta(days=1)
    return datetime.combine(day, time(9, 0), zone)


def clock_hint(moved: datetime) -> str:
    """The command that moves the demo's clock one month further, as it can be typed here."""
    later = moved + relativedelta(months=1)
    return (f"While the demo runs, move the clock yourself in another terminal:\n"
            f"  {command()} worker --once --at {later.isoformat(timespec='minutes')}")


def once_summary(settings: Settings, moved: datetime, *, host: str, port: int) -> str:
    """What `paybot demo --once` did, said once it has stopped everything it started."""
    return (
        "\nThe demo ran once (--once) and stopped: it seeded 3 demo accounts with their cards "
        "and offers, walked Maria's $50.00 payment and two plan signatures through the engine, "
        f"ran the worker now and at {moved:%b} {moved.day}, noon in New York, and wrote the "
        f"texts to {settings.outbox_dir / 'sms.jsonl'} and the emails (receipts, offers, signed "
        f"agreements) to {settings.outbox_dir / 'email'}. Its server and localstripe are "
        f"stopped, so its links no longer open.\n"
        f"To keep it serving, with a chat and the web links: {command()} demo"
        + (f" --port {port}" if port != 8080 else "")
        + (f" --host {host}" if host != "127.0.0.1" else "")
    )


async def run_demo(
    settings: Settings, *, host: str, port: int, once: bool, interactive: bool
) -> None:
    from bot.providers.localstripe import LocalStripe

    # `kill` ends the demo as Ctrl-C does: its localstripe stopped, its announcement withdrawn.
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals on this platform
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGTERM, asyncio.current_task().cancel  # type: ignore[union-attr]
        )
    server = None
    try:
        if not settings.stripe_configured:
            try:
                server = await asyncio.to_thread(LocalStripe.start)
                settings = settings.replace(
                    stripe_secret_key="sk_test_paybot_demo",
                    stripe_publishable_key="pk_test_paybot_demo",
                    stripe_api_base=server.url,
                    stripe_js_url=server.js_url,
                )
                print(f"localstripe (a local Stripe) at {server.url}")
            except Exception as exc:  # the demo still runs on the sandbox gateway
                print(f"localstripe did not start ({exc}); using the sandbox gateway")
        if not settings.api_key:
            settings = settings.replace(api_key="paybot-demo-key")
        settings = settings.replace(
            public_base_url=settings.public_base_url
            if not settings.is_default("public_base_url")
            else f"http://{host}:{port}"
        )
        providers: Providers = build_providers(settings)
        app = create_app(settings, providers)
        app.on_startup.append(seed)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:  # taken since the demo checked it
            await runner.cleanup()
            await providers.close()
            if exc.errno == errno.EADDRINUSE:
                raise PortBusy(host, port) from None
            raise
        announced = announce(settings, started_localstripe=server is not None)
        try:
            engine = app[appkeys.ENGINE]
            print(f"\nPayBot is running at {settings.public_base_url}")
            print(
                "Demo accounts: DEMO-1001 Maria (+15555550100, saved Visa 4242, offers), "
                "DEMO-1002 James (+15555550101, no saved card), "
                "DEMO-1003 Ana (+15555550102, a card that declines)."
            )
            print("\nA conversation by text, through the real engine:\n")
            await walkthrough(engine, "+15555550100")
            moved = await plans_demo(app, settings)
            staff = await seed_staff(app)
            if once:
                print(once_summary(settings, moved, host=host, port=port))
                return
            print(clock_hint(moved))
            print(f"\nTexts sent by the sandbox: {settings.outbox_dir / 'sms.jsonl'}")
            print(f"Emails (receipts, offers, agreements): {settings.outbox_dir / 'email'}")
            web_link = await demo_link(app, "DEMO-1002")
            print(
                f"\nPay on the web as James (no saved card): open {web_link}\n"
                "  Test card: 4242 4242 4242 4242, expiry 12/34, CVC 123, ZIP 10001.\n"
                "  Or the PayPal button: the demo's sandbox PayPal approves at once."
            )
            print(
                f"Accounts via the API: curl -H 'Authorization: Bearer {settings.api_keys[0]}' "
                f"{settings.public_base_url}/api/v1/accounts/DEMO-1002"
            )
            for line in staff:
                print(line)
            if interactive:
                print(
                    "\nYour turn: chat as +15555550101 (James). Try PAY, BALANCE, HELP, AGENT, "
                    "STOP. Ctrl-D to stop."
                )
                await chat_loop(engine, "+15555550101")
            else:
                print(f"\nServing until Ctrl-C. In another terminal: {command()} chat --phone "
                      "+15555550101")
                await asyncio.Event().wait()
        finally:
            withdraw(announced)
            await runner.cleanup()
            await providers.close()
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


