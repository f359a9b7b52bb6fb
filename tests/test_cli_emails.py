"""`paybot emails`: what an operator sees of receipts and notices that did not go, and how one is
sent again. Runs the command in process against the test's database (as tests/test_cli_plans.py
does); the command's own email provider is the sandbox, which writes each message to a file."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import OutboundEmail
from bot.outreach import email_outbox
from tests.cli_support import in_process_paybot
from tests.seed import add_account
from tests.test_email_outbox import receipt_email


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run `paybot emails ARGS...` in this process: (exit code, stdout, stderr)."""
    return in_process_paybot(settings, monkeypatch, capsys, "emails")


async def add_email(app, account_id: int, *, status: str, attempts: int = 0,  # type: ignore[no-untyped-def]
                    sealed: bool = False, subject: str = "Your payment receipt P-TEST1") -> int:
    clock = app[appkeys.CLOCK]
    seal = email_outbox.Seal(app[appkeys.SETTINGS].secret_key) if sealed else None
    async with app[appkeys.DATABASE].session() as session:
        row = email_outbox.queue(session, {**receipt_email(), "subject": subject},
                                 kind="decline" if sealed else "receipt", account_id=account_id,
                                 at=clock.now(), seal=seal)
        row.status, row.attempts = status, attempts
        if sealed and status != "queued":
            row.text_body = row.html_body = ""  # as a sealed row is left once done
        await session.commit()
        return row.id


def sent_files(settings) -> list[str]:  # type: ignore[no-untyped-def]
    folder = settings.outbox_dir / "email"
    """The messages the sandbox wrote, oldest first (its files are numbered)."""
    return [p.read_text() for p in sorted(folder.glob("*.eml"))] if folder.exists() else []


async def test_list_shows_what_needs_a_look_masked_and_newest_first(app, client, paybot):
    maria = await add_account(app)
    await add_email(app, maria.id, status="sent", attempts=1, subject="Your payment receipt P-OK")
    given_up = await add_email(app, maria.id, status="failed", attempts=5)
    cut_off = await add_email(app, maria.id, status="unknown", attempts=0,
                              subject="Your payment receipt P-CUT")

    code, out, err = await paybot("list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == str(cut_off) and lines[1].split()[0] == str(given_up)
    assert "ACC-1001" in lines[1] and "m***@example.com" in lines[1]
    assert "failed, 5 tries  Your payment receipt P-TEST1" in lines[1]
    assert "unknown  Your payment receipt P-CUT" in lines[0]
    assert "maria@example.com" not in out

    code, out, _ = await paybot("list", "--all", "--account", "ACC-1001")
    assert code == 0 and len(out.splitlines()) == 3 and "P-OK" in out
    code, out, err = await paybot("list", "--account", "NOPE-1")
    assert (code, out) == (2, "")
    assert err.strip() == "paybot emails list: NOPE-1: no account with that account_id"


async def test_an_empty_list_says_so(app, client, paybot):
    assert await paybot("list") == (0, "No email was given up or cut off.\n", "")


async def test_resend_sends_a_given_up_receipt_now_and_records_it(app, client, paybot, settings):
    maria = await add_account(app)
    email_id = await add_email(app, maria.id, status="failed", attempts=5)

    code, out, err = await paybot("resend", str(email_id))
    assert (code, err) == (0, "")
    assert out.strip() == f"Email {email_id} (receipt) sent to m***@example.com."
    (sent,) = sent_files(settings)
    assert "Subject: Your payment receipt P-TEST1" in sent and "maria@example.com" in sent
    async with app[appkeys.DATABASE].session() as session:
        row = await session.get(OutboundEmail, email_id)
    assert (row.status, row.attempts) == ("sent", 1)


@pytest.mark.parametrize(("status", "sealed", "reason"), [
    ("queued", False, "is on its way already (queued)"),
    ("sending", False, "is on its way already (sending)"),
    ("failed", True, "carried a personal link and its text was not kept; the customer can text "
                     "LINK for a new link"),
])
async def test_resend_refuses_what_it_cannot_send_and_changes_nothing(
    app, client, paybot, settings, status, sealed, reason
):
    maria = await add_account(app)
    email_id = await add_email(app, maria.id, status=status, sealed=sealed)
    code, out, err = await paybot("resend", str(email_id))
    assert (code, out) == (2, "")
    assert err.strip() == f"paybot emails resend: email {email_id} {reason}"
    assert sent_files(settings) == []
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.scalar(select(OutboundEmail.status))) == status


async def test_resend_of_an_unknown_id_is_one_clear_line(app, client, paybot):
    assert await paybot("resend", "999") == (
        2, "", "paybot emails resend: no email 999\n")


async def test_an_agreement_copy_given_up_is_listed_and_resent_rebuilt_from_the_ledger(
    app, client, phone, paybot, settings
):
    from bot.ledger.models import Outreach
    from tests.test_plan_sms import add_plan_offer

    await add_plan_offer(app, await add_account(app))
    maria = phone()
    await maria.send("PLAN")
    await maria.send("I agree")
    async with app[appkeys.DATABASE].session() as session:  # as if the mailer refused it 5 times
        record = await session.scalar(select(Outreach).where(Outreach.kind == "agreement_copy"))
        record.status, record.detail = "failed", {**record.detail, "attempts": 5}
        plan_id = record.plan_id
        await session.commit()
    before = len(sent_files(settings))

    code, out, _ = await paybot("list")
    assert code == 0
    (line,) = out.splitlines()
    assert line.split()[0] == "copy" and "ACC-1001" in line and "m***@example.com" in line
    assert line.endswith(f"failed, 5 tries  copy of the agreement of plan {plan_id} "
                         f"(paybot emails resend-copy {plan_id})")

    assert await paybot("resend-copy", str(plan_id)) == (
        0, f"The copy of plan {plan_id}'s agreement was sent.\n", "")
    (copy,) = sent_files(settings)[before:]
    assert "maria@example.com" in copy and "application/pdf" in copy
    async with app[appkeys.DATABASE].session() as session:
        record = await session.scalar(select(Outreach).where(Outreach.kind == "agreement_copy"))
    assert (record.status, record.detail["attempts"]) == ("sent", 1)
    assert await paybot("list") == (0, "No email was given up or cut off.\n", "")
    code, _, err = await paybot("resend-copy", "999")
    assert (code, err) == (2, "paybot emails resend-copy: no signed plan 999\n")
