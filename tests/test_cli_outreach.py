"""`paybot outreach`: the proactive messages that need a person (given up, cut off mid-send), and
one sent again under the worker's own rules (opt-outs, quiet hours in the customer's time zone).
Runs the command in process against the test's database; its SMS provider is the sandbox, which
appends each text to a file."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger import queries as ledger
from bot.ledger.models import AuditEvent, Outreach
from bot.outreach.queue import enqueue
from tests.cli_support import in_process_paybot
from tests.seed import add_account
from tests.test_outreach import add_offer

NOON_IN_NEW_YORK = "2026-11-26T12:00-05:00"
LATE_IN_NEW_YORK = "2026-11-26T23:00-05:00"


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    return in_process_paybot(settings, monkeypatch, capsys, "outreach")


async def add_outreach(app, account, *, status: str, attempts: int = 0,  # type: ignore[no-untyped-def]
                       outcomes: dict | None = None) -> int:
    offer = await add_offer(app, account)
    async with app[appkeys.DATABASE].session() as session:
        row = await enqueue(session, dedupe_key=f"offer:{offer.id}", account_id=account.id,
                            kind="offer", channel="sms", at=app[appkeys.CLOCK].now(),
                            offer_id=offer.id)
        row.status = status
        row.detail = {"attempts": attempts, **({"outcomes": outcomes} if outcomes else {})}
        await session.commit()
        return row.id


def texts(settings) -> list[dict]:  # type: ignore[no-untyped-def]
    path = settings.outbox_dir / "sms.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def status_of(app, outreach_id: int) -> str:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return (await session.get(Outreach, outreach_id)).status


async def test_list_shows_the_failed_and_the_unknown_newest_first(app, client, paybot):
    maria = await add_account(app)
    bob = await add_account(app, ref="ACC-2002", phone="+15555550122", first_name="Bob")
    await add_outreach(app, maria, status="sent")
    failed = await add_outreach(app, maria, status="failed", attempts=3,
                                outcomes={"sms": "failed: 30003"})
    unknown = await add_outreach(app, bob, status="unknown")

    code, out, err = await paybot("list")
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first.split()[0] == str(unknown) and second.split()[0] == str(failed)
    assert first.endswith("offer      ACC-2002     sms   unknown  (cut off mid-send: it may "
                          "have reached the customer)")
    assert second.endswith("offer      ACC-1001     sms   failed, 3 tries  (sms failed: 30003)")
    assert "+1555" not in out

    code, out, _ = await paybot("list", "--failed")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [str(failed)]
    code, out, _ = await paybot("list", "--unknown", "--account", "ACC-2002")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [str(unknown)]
    code, out, err = await paybot("list", "--failed", "--unknown")
    assert code == 2 and "not allowed with argument" in err


async def test_an_empty_list_says_so(app, client, paybot):
    assert await paybot("list") == (0, "No outreach failed or unknown.\n", "")
    assert await paybot("list", "--unknown") == (0, "No outreach unknown.\n", "")


async def test_resend_sends_a_failed_message_now_and_records_who_asked(
    app, client, paybot, settings
):
    maria = await add_account(app)
    outreach_id = await add_outreach(app, maria, status="failed", attempts=3)

    code, out, err = await paybot("resend", str(outreach_id), "--at", NOON_IN_NEW_YORK)
    assert (code, err) == (0, "")
    assert out == f"Outreach {outreach_id} (offer) sent by sms.\n"
    (text,) = texts(settings)
    assert text["to"] == maria.phone and "Complete Payment Agreement: " in text["body"]
    assert await status_of(app, outreach_id) == "sent"
    async with app[appkeys.DATABASE].session() as session:
        kinds = list(await session.scalars(
            select(AuditEvent.kind).where(AuditEvent.actor == "cli:outreach resend")))
    assert kinds == ["outreach_requeued", "outreach_sent"]

    code, out, err = await paybot("resend", str(outreach_id))  # sent now: not again
    assert (code, out) == (2, "")
    assert err == (f"paybot outreach resend: outreach {outreach_id} is sent: it was sent; only "
                   "failed or unknown ones are sent again\n")
    assert len(texts(settings)) == 1


async def test_resend_waits_for_the_end_of_quiet_hours(app, client, paybot, settings):
    maria = await add_account(app)  # New York
    outreach_id = await add_outreach(app, maria, status="unknown")

    code, out, err = await paybot("resend", str(outreach_id), "--at", LATE_IN_NEW_YORK)
    assert (code, err) == (0, "")
    assert out == (f"Outreach {outreach_id} (offer) held until 2026-11-27 13:00 UTC "
                   "(quiet_hours); the worker sends it then.\n")
    assert texts(settings) == [] and await status_of(app, outreach_id) == "held"


async def test_resend_never_texts_an_opted_out_number(app, client, paybot, settings):
    maria = await add_account(app)
    outreach_id = await add_outreach(app, maria, status="failed", attempts=3)
    async with app[appkeys.DATABASE].session() as session:
        await ledger.set_opt_out(session, maria.phone, opted_out=True, keyword="STOP",
                                 channel="sms", at=app[appkeys.CLOCK].now())
        await session.commit()

    code, out, err = await paybot("resend", str(outreach_id), "--at", NOON_IN_NEW_YORK)
    assert (code, err) == (1, "")
    assert out == f"Outreach {outreach_id} (offer) not sent: sms opted_out.\n"
    assert texts(settings) == [] and await status_of(app, outreach_id) == "skipped"


async def test_resend_of_nothing_is_refused(app, client, paybot):
    code, out, err = await paybot("resend", "999")
    assert (code, out, err) == (2, "", "paybot outreach resend: no outreach 999\n")
    code, out, err = await paybot("resend", "1", "--at", "tomorrow")
    assert code == 2 and "--at takes a date and time with its UTC offset" in err
