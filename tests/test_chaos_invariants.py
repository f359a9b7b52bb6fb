"""The chaos run's end checks (bench/chaos/invariants.py) on a small ledger: a clean one passes
every check, and each kind of violation is reported by its check, in words that name it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bench.chaos.customers import Attempt, LoadStats, MessageRecord
from bench.chaos.invariants import Check, check
from bench.chaos.stage import ChargeRecord, Stage
from bot.ledger.db import Database
from bot.ledger.models import (
    Account,
    Creditor,
    Message,
    OutboundEmail,
    Outreach,
    Payment,
    Plan,
)
from bot.providers.localstripe import LocalStripe
from bot.providers.stripe_gateway import StripeGateway
from tests.fakes.sendgrid_api import RecordedMail, SendGridFake
from tests.fakes.twilio_api import TwilioFake

NOW = datetime.now(UTC)
TODAY = NOW.date()
# Nothing listens here: the checks fall back on the proxy's records of the charges.
NO_LOCALSTRIPE = "http://127.0.0.1:9"


class NoWeb:
    def live_urls(self) -> list[str]:
        return []


@dataclass
class World:
    database: Database
    stage: Stage
    stats: LoadStats

    async def add(self, *rows: object) -> None:
        async with self.database.session() as session:
            session.add_all(rows)
            await session.commit()

    def charge(self, key: str, intent: str, cents: int, status: str = "succeeded") -> None:
        self.stage.charges.append(ChargeRecord(key, intent, status, cents, "cus_1", 200))

    def mail(self, message_id: str, to: str = "ana@example.com",
             subject: str = "Your payment receipt PAY1") -> None:
        body = {"personalizations": [{"to": [{"email": to}]}], "subject": subject}
        self.stage.sendgrid.requests.append(
            RecordedMail("/v3/mail/send", {}, body, status=202, message_id=message_id))

    def sms(self, sid: str, body: str, *answers: list[str] | None) -> None:
        record = MessageRecord(sid, "+15558000001", body)
        for texts in answers:
            status = 200 if texts is not None else 0
            record.attempts.append(
                Attempt(0.0, 0.1, status, None if texts is not None else "timeout", texts))
        self.stats.records.append(record)


def payment(key: str, status: str, cents: int, *, day: date = TODAY, plan: int | None = None,
            number: int | None = None, intent: str | None = None) -> Payment:
    return Payment(
        reference=key.replace(":", "").replace("#", "")[:16].upper(), idempotency_key=key,
        account_id=1, method_id=None, plan_id=plan, installment_number=number,
        amount_cents=cents, scheduled_for=day, status=status, processor_id=intent,
        channel="sms", created_at=NOW, updated_at=NOW,
    )


def receipt(reference: str, message_id: str | None, status: str = "sent") -> OutboundEmail:
    return OutboundEmail(
        account_id=1, kind="receipt", to_address="ana@example.com",
        subject=f"Your payment receipt {reference}", text_body=f"Reference {reference}",
        html_body="", transactional=True, status=status, attempts=1, not_before=NOW,
        created_at=NOW, sent_at=NOW if message_id else None, provider_message_id=message_id)


@pytest.fixture
async def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    """One account owing $100 after paying $25 by text and the first $40 of a plan; the second
    installment declined, the third not due yet; two texts, one receipt, one agreement copy."""
    database = Database(f"sqlite:///{tmp_path / 'chaos.sqlite3'}")
    await database.migrate()
    stage = Stage(database_url=f"sqlite:///{tmp_path / 'chaos.sqlite3'}", redis_url="",
                  web=NoWeb(), localstripe_url=NO_LOCALSTRIPE, stripe_api_url="",
                  twilio=TwilioFake(), sendgrid=SendGridFake())
    w = World(database, stage, LoadStats())
    w.stats.owed = {"A-1": 165_00}  # as seeded: $65 paid since
    await w.add(
        Creditor(code="c", name="Creditor", settings={}),
        Account(id=1, account_ref="A-1", creditor_code="c", first_name="Ana", last_name="Diaz",
                phone="+15558000001", email="ana@example.com", balance_cents=100_00,
                timezone="America/New_York", created_at=NOW, updated_at=NOW),
    )
    await w.add(Plan(id=1, account_id=1, total_cents=120_00, installment_count=3,
                     frequency="custom", created_at=NOW))
    await w.add(
        payment("pay:1", "paid", 25_00, intent="pi_1"),
        payment("offer:1#1", "paid", 40_00, day=TODAY - timedelta(days=2), plan=1, number=1,
                intent="pi_2"),
        payment("offer:1#2", "declined", 40_00, day=TODAY - timedelta(days=1), plan=1, number=2),
        payment("offer:1#3", "scheduled", 40_00, day=TODAY + timedelta(days=3), plan=1,
                number=3),
    )
    w.charge("pay:1", "pi_1", 25_00)
    w.charge("offer:1#1", "pi_2", 40_00)
    w.charge("offer:1#2", "pi_3", 40_00, status="requires_payment_method")
    await w.add(
        Message(id=1, direction="inbound", phone="+15558000001", body="PAY", provider_sid="SM1",
                created_at=NOW),
        Message(id=2, direction="inbound", phone="+15558000001", body="50", provider_sid="SM2",
                created_at=NOW),
    )
    await w.add(Message(id=3, direction="outbound", phone="+15558000001", body="How much?",
                        in_reply_to_id=1, created_at=NOW))
    w.sms("SM1", "PAY", None, ["How much?"])  # a timeout, then Twilio's retry answered
    w.sms("SM2", "50", ["Pay with Visa?"], ["Pay with Visa?"])  # no reply stored: the same twice
    await w.add(
        receipt("PAY1", "mid-1"),
        receipt("OFFER11", "mid-4"),
        Outreach(dedupe_key="copy:1", account_id=1, plan_id=1, kind="agreement_copy",
                 channel="email", status="sent", detail={"message_id": "mid-2"},
                 created_at=NOW, sent_at=NOW),
    )
    w.mail("mid-1")
    w.mail("mid-4", subject="Your payment receipt OFFER11")
    w.mail("mid-2", subject="Creditor: your signed payment plan agreement")
    yield w
    await database.close()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


async def test_a_clean_ledger_passes_every_check(world: World) -> None:
    checks = await check(world.stage, world.stats)
    assert [(c.name, c.violations) for c in checks] == [
        ("charges match the ledger", []),
        ("nothing collected beyond the balance", []),
        ("inbound messages stored once, answered the same", []),
        ("every receipt and notice sent exactly once", []),
        ("installments due are charged once, declined or canceled", []),
    ]
    assert [c.examined for c in checks] == [5, 1, 2, 5, 2]


async def double_charge(w: World) -> None:
    w.charge("pay:1", "pi_9", 25_00)  # the same key charged twice


async def charge_without_payment(w: World) -> None:
    w.charge("pay:7", "pi_7", 30_00)


async def paid_without_charge(w: World) -> None:
    w.stats.owed["A-1"] += 10_00  # a payment the balance already shows
    await w.add(payment("pay:2", "paid", 10_00, intent="pi_8"), receipt("PAY2", "mid-6"))
    w.mail("mid-6", subject="Your payment receipt PAY2")


async def charged_but_ledger_says_declined(w: World) -> None:
    w.charge("offer:1#2", "pi_4", 40_00)


async def beyond_balance(w: World) -> None:
    await w.add(payment("pay:3", "scheduled", 70_00, day=TODAY + timedelta(days=5)))


async def balance_not_lowered(w: World) -> None:
    async with w.database.session() as session:
        account = await session.get(Account, 1)
        assert account is not None
        account.balance_cents = 120_00  # a payment marked Paid that left the balance as it was
        await session.commit()


async def answered_but_not_stored(w: World) -> None:
    w.sms("SM3", "yes", ["Confirm?"])


async def retries_answered_differently(w: World) -> None:
    w.sms("SM4", "1", ["Pay now or later?"], [])
    await w.add(Message(id=4, direction="inbound", phone="+15558000001", body="1",
                        provider_sid="SM4", created_at=NOW))


async def retry_answered_empty(w: World) -> None:
    """Issue 16's case: the turn failed after the charge; Twilio's retry got `<Response/>`."""
    w.sms("SM5", "agree", None, [])
    await w.add(Message(id=5, direction="inbound", phone="+15558000001", body="agree",
                        provider_sid="SM5", created_at=NOW))


async def mail_sent_twice(w: World) -> None:
    w.mail("mid-3")  # a second copy of the receipt: no row records it


async def email_lost(w: World) -> None:
    await w.add(receipt("SCHED1", None, status="failed"))


async def email_cut_off_before_sendgrid(w: World) -> None:
    """A process killed between claiming the row and SendGrid taking the mail: marked unknown,
    never sent again (at most one copy), so the customer never got it."""
    await w.add(receipt("SCHED2", None, status="unknown"))


async def receipt_missing(w: World) -> None:
    w.stats.owed["A-1"] += 10_00
    await w.add(payment("pay:2", "paid", 10_00, intent="pi_8"))
    w.charge("pay:2", "pi_8", 10_00)


async def receipt_twice(w: World) -> None:
    await w.add(receipt("PAY1", "mid-5"))
    w.mail("mid-5")


async def installment_left_processing(w: World) -> None:
    """Claimed by a worker that died before the processor: past the recovery delay, still so."""
    left = payment("offer:2#1", "processing", 30_00, day=TODAY - timedelta(days=1), plan=1,
                   number=4)
    left.updated_at = NOW - timedelta(minutes=11)
    await w.add(left)


SPOILED: list[tuple[Callable[[World], Awaitable[None]], str, str | list[str]]] = [
    (double_charge, "charges match the ledger", "key pay:1: 2 intents took money (pi_1, pi_9)"),
    (charge_without_payment, "charges match the ledger",
     "key pay:7: intent pi_7 took money but no ledger payment has the key"),
    (paid_without_charge, "charges match the ledger",
     "payment PAY2 is paid (pi_8) but no charge of key pay:2 took money"),
    (charged_but_ledger_says_declined, "charges match the ledger",
     "key offer:1#2: intent pi_4 took money but payment OFFER12 is declined"),
    (beyond_balance, "nothing collected beyond the balance", [
        "account A-1: 11000c pending, processing or scheduled beyond its balance of 10000c",
        "account A-1: 6500c paid and 11000c pending, processing or scheduled beyond the 16500c "
        "it owed",
    ]),
    (balance_not_lowered, "nothing collected beyond the balance",
     "account A-1: balance 12000c, but it owed 16500c and paid 6500c"),
    (answered_but_not_stored, "inbound messages stored once, answered the same",
     "SM3 ('yes') was answered but never stored"),
    (retries_answered_differently, "inbound messages stored once, answered the same",
     "SM4 ('1') has no stored reply and its retries were answered differently: "
     "'Pay now or later?' / ''"),
    (retry_answered_empty, "inbound messages stored once, answered the same",
     "SM5 ('agree') has no stored reply and a retry got an empty answer (timeout after 0.1s, "
     "200 after 0.1s: [])"),
    (mail_sent_twice, "every receipt and notice sent exactly once",
     "SendGrid took a mail no ledger row records (mid-3 to ana@example.com: "
     "'Your payment receipt PAY1'): sent twice, or sent unowed"),
    (email_lost, "every receipt and notice sent exactly once",
     "email 3 (receipt to ana@example.com) is failed: owed and not sent"),
    (email_cut_off_before_sendgrid, "every receipt and notice sent exactly once",
     "1 email(s) to ana@example.com ('Your payment receipt SCHED2') cut off mid-send before "
     "SendGrid took them: owed and not sent"),
    (receipt_missing, "every receipt and notice sent exactly once",
     "payment PAY2 is paid and has 0 receipts (one is owed)"),
    (receipt_twice, "every receipt and notice sent exactly once",
     "payment PAY1 is paid and has 2 receipts (one is owed)"),
    (installment_left_processing, "installments due are charged once, declined or canceled",
     f"installment OFFER21 (plan 1 #4, due {TODAY - timedelta(days=1)}) is processing"),
]


@pytest.mark.parametrize(("spoil", "name", "line"), SPOILED, ids=[s[0].__name__ for s in SPOILED])
async def test_each_violation_is_reported_by_its_check_alone(
    world: World, spoil: Callable[[World], Awaitable[None]], name: str, line: str | list[str]
) -> None:
    await spoil(world)
    checks = by_name(await check(world.stage, world.stats))
    assert checks[name].violations == (line if isinstance(line, list) else [line])
    assert {n: c.violations for n, c in checks.items() if n != name and c.violations} == {}


async def test_an_installment_cut_off_before_the_processor_is_a_note_while_recovery_waits(
    world: World,
) -> None:
    await world.add(payment("offer:2#1", "processing", 30_00, day=TODAY - timedelta(days=1),
                            plan=1, number=4))
    checks = by_name(await check(world.stage, world.stats))
    installments = checks["installments due are charged once, declined or canceled"]
    assert installments.violations == []
    assert installments.notes == [
        "installment OFFER21 processing, never sent to the processor: recovered after the "
        "worker's delay of 0:10:00"
    ]


async def test_localstripe_is_read_and_an_intent_the_proxy_never_saw_is_found_by_its_reference(
    world: World, stripe_gateway: StripeGateway, localstripe: LocalStripe
) -> None:
    """A web process killed mid-charge takes the proxy's record with it; the intent is still in
    localstripe, and its metadata names the payment (which the webhook then marked Paid)."""
    world.stage.localstripe_url = localstripe.url
    customer = await stripe_gateway.ensure_customer(
        account_ref="A-1", name="Ana Diaz", email=None, existing_id=None)
    card = await stripe_gateway.save_method(customer_id=customer, method_ref="pm_card_visa")

    async def charge(key: str, cents: int, reference: str) -> str:
        result = await stripe_gateway.charge(
            customer_id=customer, method_ref=card.processor_ref, amount_cents=cents,
            idempotency_key=key, metadata={"paybot_reference": reference}, method_kind="card")
        assert result.status == "paid" and result.processor_id
        return result.processor_id

    unseen = await charge("checkout:9", 10_00, "CHECKOUT9")
    await world.add(payment("checkout:9", "paid", 10_00, intent=unseen),
                    receipt("CHECKOUT9", "mid-7"))
    world.mail("mid-7", subject="Your payment receipt CHECKOUT9")
    world.stats.owed["A-1"] += 10_00
    stray = await charge("stray:1", 5_00, "P-NOPE")

    checks = by_name(await check(world.stage, world.stats))
    charges = checks["charges match the ledger"]
    assert charges.violations == [
        f"intent {stray} (succeeded, 500c) took money and names no ledger payment "
        "(reference 'P-NOPE')"
    ]
    assert charges.notes == [
        f"intent {unseen} (succeeded) not seen by the proxy; found by its reference CHECKOUT9"
    ]
    assert {n: c.violations for n, c in checks.items() if c.violations} == {
        "charges match the ledger": charges.violations
    }


async def test_an_email_cut_off_after_sendgrid_took_it_was_sent_once(world: World) -> None:
    """Killed after SendGrid took the mail, before the row was marked sent: the ledger says
    unknown, but the customer got exactly one copy. A note, not a violation."""
    await world.add(receipt("SCHED3", None, status="unknown"))
    world.mail("mid-9", subject="Your payment receipt SCHED3")
    checks = by_name(await check(world.stage, world.stats))
    emails = checks["every receipt and notice sent exactly once"]
    assert emails.violations == []
    assert emails.notes == ["a mail to ana@example.com ('Your payment receipt SCHED3') left once; "
                            "its row was cut off mid-send, so the ledger marks it unknown"]
