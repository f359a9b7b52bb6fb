"""`paybot emails`: what an operator sees of receipts and notices that did not go, and how one is
sent again. Runs the command in process against the test's database (as tests/test_cli_plans.py
does); the command's own email provider is the sandbox, which writes each message to a file."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest
from sqlalchemy import select

from bot import appkeys, cli, email_outbox
from bot.models import OutboundEmail
from tests.seed import add_account
from tests.test_email_outbox import receipt_email


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run `paybot emails ARGS...` in this process: (exit code, stdout, stderr)."""
    for name in list(os.environ):
        if name.startswith(("STRIPE_", "TWILIO_", "SENDGRID_", "PAYBOT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    if settings.redis_url:
        monkeypatch.setenv("REDIS_URL", settings.redis_url)
    else:
        monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("PAYBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("PAYBOT_MIGRATE_ON_START", "0")
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            await asyncio.to_thread(cli.main, ["emails", *args])
            code: Any = 0
        except SystemExit as exc:
            code = exc.code
        finally:
            root.setLevel(level)
            root.handlers[:] = handlers
        out, err = capsys.readouterr()
        return (code if isinstance(code, int) else 1), out, err

    return run


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
    return sorted(p.read_text() for p in folder.glob("*.eml")) if folder.exists() else []


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
