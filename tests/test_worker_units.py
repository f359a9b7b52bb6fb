"""The worker's jobs, each run alone (bot/worker/: rules, claims, charges, declines), without the
loop around them. What a whole pass does is asserted in test_worker.py."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import AuditEvent, Payment
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.worker.charges import Charges
from bot.worker.claims import CLAIM_EVENT, Claims, Job
from bot.worker.config import PassReport, WorkerConfig
from bot.worker.declines import Declines
from bot.worker.plan_notices import PlanNotices
from bot.worker.rules import CreditorRules
from tests.seed import add_account
from tests.test_worker import NoLimit, add_scheduled, local, payments


class Units:
    """The worker's units wired as ``Worker`` wires them, for one test."""

    def __init__(self, app, *, name: str = "worker", **config) -> None:  # type: ignore[no-untyped-def]
        providers = app[appkeys.PROVIDERS]
        settings = app[appkeys.SETTINGS]
        database, clock = app[appkeys.DATABASE], app[appkeys.CLOCK]
        notifier = Notifier(sms=providers.sms, email=providers.email, brand=settings.brand)
        self.config = WorkerConfig(**config)
        self.rules = CreditorRules(settings, self.config)
        self.notices = PlanNotices(
            database=database, notifier=notifier, clock=clock, rules=self.rules, name=name
        )
        self.claims = Claims(
            database=database, clock=clock, config=self.config, rules=self.rules,
            notices=self.notices, name=name, can_look_up=False,
        )
        self.declines = Declines(
            database=database, notifier=notifier, settings=settings, clock=clock,
            seal=email_outbox.Seal(settings.secret_key), name=name,
        )
        self.charges = Charges(
            database=database, gateway=providers.payments, limiter=NoLimit(), notifier=notifier,
            clock=clock, rules=self.rules, claims=self.claims, notices=self.notices,
            declines=self.declines, name=name,
        )


async def test_a_creditors_rules_are_its_overrides_of_the_workers_defaults(app, client):
    await add_account(app, creditor_settings={"decline_retry_days": 5})
    rules = CreditorRules(app[appkeys.SETTINGS], WorkerConfig(max_decline_retries=2))
    async with app[appkeys.DATABASE].session() as session:
        northwind = await rules.of(session, "northwind")
        default = await rules.of(session, None)
    assert (northwind.retry_days, northwind.max_retries) == (5, 2)
    assert northwind.brand == "Northwind Recovery"
    assert (default.retry_days, default.max_retries) == (None, 2)
    assert default.brand == app[appkeys.SETTINGS].brand


async def test_claims_take_a_due_row_once_and_release_it(app, client, clock):
    maria = await add_account(app)
    (reference,) = await add_scheduled(app, maria, date(2026, 12, 15))
    units, other = Units(app), Units(app, name="w2")
    clock.set(local(date(2026, 12, 14), 10))
    assert await units.claims.due_ids() != []  # due somewhere on Earth: read, not yet claimed
    assert await units.claims.claim_due(await units.claims.due_ids(), PassReport()) == []

    clock.set(local(date(2026, 12, 15), 10))
    report = PassReport()
    ids = await units.claims.due_ids()
    (job,) = await units.claims.claim_due(ids, report)
    assert job.recovery is False and report.claimed == 1
    assert await other.claims.claim_due(ids, PassReport()) == []  # ours alone
    (payment,) = await payments(app)
    assert payment.status == "processing"
    async with app[appkeys.DATABASE].session() as session:
        claims = list(await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == CLAIM_EVENT)
        ))
    assert [c.detail["reference"] for c in claims] == [reference]

    await units.claims.release(job, report)
    assert report.released == 1
    assert [p.status for p in await payments(app)] == ["scheduled"]


async def test_charges_process_one_claimed_job_and_write_it_back(app, client, clock):
    maria = await add_account(app)
    await add_scheduled(app, maria, date(2026, 12, 15))
    units = Units(app)
    clock.set(local(date(2026, 12, 15), 10))
    report = PassReport()
    (job,) = await units.claims.claim_due(await units.claims.due_ids(), report)

    await units.charges.process(job, report)
    assert (report.paid, report.kept, units.charges.halted) == (1, 0, False)
    (payment,) = await payments(app)
    assert payment.status == "paid" and payment.processor_id
    await units.charges.process(job, report)  # recorded already: left as it is
    assert (report.paid, report.kept) == (1, 1)


async def test_declines_schedule_one_retry_per_decline(app, client, clock):
    maria = await add_account(app, methods=("pm_card_chargeCustomerFail",))
    await add_scheduled(app, maria, date(2026, 12, 15))
    units = Units(app, retry_declined_after_days=3)
    clock.set(local(date(2026, 12, 15), 10))
    report = PassReport()
    (job,) = await units.claims.claim_due(await units.claims.due_ids(), report)
    await units.charges.process(job, report)
    assert (report.declined, report.retries_scheduled) == (1, 1)

    async with app[appkeys.DATABASE].session() as session:
        declined = await session.scalar(select(Payment).where(Payment.status == "declined"))
        rules = await units.rules.of(session, "northwind")
    assert declined is not None
    again = await units.declines.schedule_retry(declined, maria, rules, clock.now(), report)
    assert again == date(2026, 12, 18)  # scheduled already: the same date, no second row
    assert report.retries_scheduled == 1
    assert [p.status for p in await payments(app)] == ["declined", "scheduled"]


async def test_a_job_recorded_meanwhile_is_kept(app, client, clock):
    units = Units(app)
    report = PassReport()
    await units.charges.process(Job(payment_id=999, recovery=False), report)
    assert report.kept == 1
