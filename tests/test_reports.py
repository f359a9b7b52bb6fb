"""bot/reports on a seeded ledger: payments across accounts (filters, paging, the CSV whole) and
the dashboard's figures for today and the last 30 days (UTC), whole."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bot import appkeys
from bot.ledger.models import (
    Account,
    AuditEvent,
    Conversation,
    Creditor,
    Handoff,
    Message,
    Payment,
    PaymentMethod,
    Refund,
)
from bot.reports.dashboard import Figures, Funnel, dashboard
from bot.reports.payments import PaymentFilter, ReportError, list_payments, payments_csv

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # the suite's FrozenClock
MIDNIGHT = datetime(2026, 11, 25, tzinfo=UTC)


def at(day: int, hour: int = 12, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


@pytest.fixture
async def seeded(app, client):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        session.add_all([
            Creditor(code="northwind", name="Northwind Recovery", settings={}),
            Creditor(code="southwind", name="Southwind Credit", settings={}),
        ])
        accounts = [
            Account(account_ref=ref, creditor_code=creditor, first_name=first, last_name=last,
                    phone=phone, balance_cents=100000, ssn_last4="6789", created_at=at(1, 0, 9),
                    updated_at=at(1, 0, 9))
            for ref, creditor, first, last, phone in [
                ("ACC-1", "northwind", "Maria", "Lopez", "+15555550101"),
                ("ACC-2", "southwind", "=Bob", "Stone", "+15555550102"),
                ("ACC-3", "northwind", "Cy", "Doe", "+15555550103"),
            ]
        ]
        session.add_all(accounts)
        await session.flush()
        a1, a2, a3 = (a.id for a in accounts)
        visa = PaymentMethod(account_id=a1, processor_ref="pm_1", kind="card", brand="Visa",
                             last4="4242", created_at=at(1, 0, 9))
        bank = PaymentMethod(account_id=a2, processor_ref="pm_2", kind="us_bank_account",
                             brand="Bank", last4="6789", created_at=at(1, 0, 9))
        session.add_all([visa, bank])
        await session.flush()

        def payment(ref, account, method, channel, status, cents, day, made, changed=None,  # type: ignore[no-untyped-def]
                    fee=0, refunded=0):
            return Payment(reference=ref, idempotency_key=ref, account_id=account,
                           method_id=method, amount_cents=cents, fee_cents=fee,
                           refunded_cents=refunded, scheduled_for=day, status=status,
                           channel=channel, created_at=made, updated_at=changed or made)

        payments = [
            payment("P-1", a1, visa.id, "sms", "paid", 5000, date(2026, 11, 25), at(25, 10),
                    refunded=1000),
            payment("P-2", a1, visa.id, "web", "paid", 20000, date(2026, 11, 20), at(20),
                    fee=300),
            payment("P-3", a2, bank.id, "web", "paid", 7500, date(2026, 11, 25), at(1, 9),
                    changed=at(25, 9)),  # scheduled on Nov 1: the worker charged it
            payment("P-4", a2, bank.id, "sms", "declined", 3000, date(2026, 11, 24), at(24, 8)),
            payment("P-5", a3, None, "sms", "scheduled", 4000, date(2026, 12, 10), at(25, 11)),
            payment("P-6", a1, visa.id, "sms", "paid", 9999, date(2026, 9, 1), at(1, 9, 9)),
        ]
        session.add_all(payments)
        await session.flush()
        session.add_all([
            Refund(payment_id=payments[0].id, account_id=a1, amount_cents=1000,
                   idempotency_key="r1", status="succeeded", requested_by="staff:ana",
                   created_at=at(25, 12), updated_at=at(25, 12)),
            Refund(payment_id=payments[1].id, account_id=a1, amount_cents=500,
                   idempotency_key="r2", status="failed", requested_by="staff:ana",
                   created_at=at(22), updated_at=at(22)),
        ])
        conversations = {
            phone: Conversation(phone=phone, account_id=account, created_at=at(1, 0, 9),
                                updated_at=at(1, 0, 9))
            for phone, account in [("+15555550101", a1), ("+15555550102", a2),
                                   ("+15555550103", None)]
        }
        session.add_all(conversations.values())
        await session.flush()
        session.add_all([
            Message(direction=direction, channel="sms", phone=phone, body="...", created_at=when)
            for direction, phone, when in [
                ("outbound", "+15555550101", at(25, 9)),
                ("inbound", "+15555550101", at(25, 10)),
                ("outbound", "+15555550102", at(5)),
                ("inbound", "+15555550102", at(5, 13)),
                ("outbound", "+15555550103", at(25, 9)),
                ("outbound", "+15555550104", at(10, 9, 10)),  # more than 30 days ago
                ("inbound", "+15555550105", at(25, 9)),  # wrote in, never texted
            ]
        ])
        first = conversations["+15555550101"].id
        session.add_all([
            Handoff(conversation_id=first, reason=reason, requested_at=when,
                    first_reply_at=when + timedelta(seconds=wait) if wait else None)
            for reason, when, wait in [
                ("asked", at(25, 10), 240),
                ("hardship", at(20), 600),
                ("asked", at(15), None),
                ("dispute", at(10, 12, 10), 60),  # more than 30 days ago
            ]
        ])
        session.add_all([
            AuditEvent(at=when, actor="bot", kind=kind, phone=phone, detail={})
            for kind, phone, when in [
                ("opt_out", "+15555550102", at(22)),
                ("opt_out", "+15555550103", at(25, 9)),
                ("opt_out", "+15555550103", at(25, 10)),
                ("opt_in", "+15555550101", at(25, 11)),
            ]
        ])
        await session.commit()
    return app[appkeys.DATABASE]


CSV_HEADER = ("reference,account_id,customer,creditor,channel,status,amount,fee,refunded,"
              "scheduled_for,created_at_utc,method,plan,installment\n")


async def test_the_csv_holds_every_payment_in_dollars_without_secrets(seeded):
    async with seeded.session() as session:
        text = await payments_csv(session)
    assert text == CSV_HEADER + (
        "P-5,ACC-3,Cy Doe,northwind,sms,Scheduled,40.00,0.00,0.00,2026-12-10,"
        "2026-11-25T11:00:00Z,,,\n"
        "P-3,ACC-2,'=Bob Stone,southwind,web,Paid,75.00,0.00,0.00,2026-11-25,"
        "2026-11-01T09:00:00Z,Bank ending 6789,,\n"
        "P-1,ACC-1,Maria Lopez,northwind,sms,Paid,50.00,0.00,10.00,2026-11-25,"
        "2026-11-25T10:00:00Z,Visa ending 4242,,\n"
        "P-4,ACC-2,'=Bob Stone,southwind,sms,Declined,30.00,0.00,0.00,2026-11-24,"
        "2026-11-24T08:00:00Z,Bank ending 6789,,\n"
        "P-2,ACC-1,Maria Lopez,northwind,web,Paid,200.00,3.00,0.00,2026-11-20,"
        "2026-11-20T12:00:00Z,Visa ending 4242,,\n"
        "P-6,ACC-1,Maria Lopez,northwind,sms,Paid,99.99,0.00,0.00,2026-09-01,"
        "2026-09-01T09:00:00Z,Visa ending 4242,,\n"
    )
    assert "6789," not in text.replace("ending 6789", "")  # the SSN's last 4 never


async def test_filters_and_pages(seeded):
    async with seeded.session() as session:
        southwind = await list_payments(session, PaymentFilter(creditor="southwind"))
        assert [r.reference for r in southwind.rows] == ["P-3", "P-4"]
        made_today = await list_payments(session, PaymentFilter(
            date_field="created_at", date_from=date(2026, 11, 25), date_to=date(2026, 11, 25)))
        assert [r.reference for r in made_today.rows] == ["P-5", "P-1"]
        paid_by_sms = await list_payments(session, PaymentFilter(status="paid", channel="sms"))
        assert [r.reference for r in paid_by_sms.rows] == ["P-1", "P-6"]
        due_in_november = PaymentFilter(date_from=date(2026, 11, 1), date_to=date(2026, 11, 30))
        second = await list_payments(session, due_in_november, page=2, per_page=2)
        assert ([r.reference for r in second.rows], second.total, second.pages) == (
            ["P-4", "P-2"], 4, 2
        )
        with pytest.raises(ReportError, match="status 'lost': one of scheduled"):
            await list_payments(session, PaymentFilter(status="lost"))
        with pytest.raises(ReportError, match="501 a page: from 1 to 500"):
            await list_payments(session, per_page=501)
        csv_text = await payments_csv(session, PaymentFilter(creditor="nobody"))
    assert csv_text == CSV_HEADER


async def test_the_dashboard_today_and_the_last_30_days(seeded):
    async with seeded.session() as session:
        board = await dashboard(session, now=NOW)
    assert (board.as_of, board.timezone) == (NOW, "UTC")
    assert board.today == Figures(
        start=MIDNIGHT, end=NOW,
        collected_cents={"sms": 5000, "web": 0, "worker": 7500},
        collected_count={"sms": 1, "web": 0, "worker": 1},
        refunded_cents=1000,
        funnel=Funnel(texted=2, replied=1, verified=1, paid=1),
        handoffs_by_reason={"asked": 1},
        median_first_reply_seconds=240.0,
        opt_outs=1, declines=0, declined_cents=0,
    )
    assert board.last_30_days == Figures(
        start=datetime(2026, 10, 27, tzinfo=UTC), end=NOW,
        collected_cents={"sms": 5000, "web": 20000, "worker": 7500},
        collected_count={"sms": 1, "web": 1, "worker": 1},
        refunded_cents=1000,
        funnel=Funnel(texted=3, replied=2, verified=2, paid=2),
        handoffs_by_reason={"asked": 2, "hardship": 1},
        median_first_reply_seconds=420.0,
        opt_outs=2, declines=1, declined_cents=3000,
    )
    assert board.last_30_days.collected_total_cents == 32500
