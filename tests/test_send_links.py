"""`paybot send-links`: the first personalized text, opt-outs, quiet hours, delivery status."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import FlowSettings
from bot.ledger.models import Account, AuditEvent, Conversation, Creditor, Link, Message, OptOut
from bot.outreach.campaigns import CampaignError, mask_numbers, send_links
from bot.outreach.compliance import DEFAULT_DISCLOSURE, in_quiet_hours
from bot.security import token_digest
from bot.text.gsm7 import is_gsm7, segment_count
from tests.conftest import PUBLIC_BASE_URL, signed_post
from tests.seed import add_account

ROOT = Path(__file__).resolve().parents[1]
DISCLOSURE = "This is a communication from a debt collector."
LINK = re.compile(re.escape(PUBLIC_BASE_URL) + r"/p/([A-Za-z0-9_-]+)")


async def add(app, ref: str, phone: str | None, timezone: str = "America/New_York",  # type: ignore[no-untyped-def]
              **kwargs) -> Account:
    return await add_account(app, ref=ref, phone=phone, timezone=timezone, methods=(), **kwargs)


async def run(app, sms=None, email=None, **kwargs):  # type: ignore[no-untyped-def]
    return await send_links(settings=app[appkeys.SETTINGS], database=app[appkeys.DATABASE],
                            sms=sms or app[appkeys.PROVIDERS].sms,
                            email=email or app[appkeys.PROVIDERS].email,
                            clock=app[appkeys.CLOCK], **kwargs)


async def rows(app, model, *where):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(model).where(*where)))


def without_disclosure(body: str) -> str:
    return body.replace(DISCLOSURE, "").replace(DEFAULT_DISCLOSURE, "")


# --- the message ---

async def test_the_first_message_says_who_what_how_much_where_and_how_to_stop(app, client,
                                                                            providers):
    await add(app, "ACC-1001", "+15555550100")
    report = await run(app)
    assert report.summary == "1 sent, 0 failed"
    (sent,) = providers.sms.outbox
    assert sent.to == "+15555550100"
    body = sent.body
    assert body.startswith("Northwind Recovery: Hi Maria, your balance on Acme Card ending 4821 "
                           "is $1,250.00. Reply PAY to pay by text or open "
                           f"{PUBLIC_BASE_URL}/p/")
    assert body.endswith(f"{PUBLIC_BASE_URL}/p/{LINK.findall(body)[0]} {DISCLOSURE} "
                         "Reply STOP to opt out.")
    assert is_gsm7(body) and segment_count(without_disclosure(body)) <= 2

    # The link in the text opens the account's page.
    (token,) = LINK.findall(body)
    page = await client.get(f"/p/{token}")
    assert page.status == 200
    assert "Maria" in await page.text()
    (link,) = await rows(app, Link)
    assert link.purpose == "campaign" and link.revoked_at is None

    # The text is in the ledger with the provider's sid, in the number's conversation.
    (message,) = await rows(app, Message)
    assert (message.direction, message.provider_sid, message.phone, message.body, message.status) \
        == ("outbound", sent.sid, "+15555550100", body, "queued")
    (conversation,) = await rows(app, Conversation)
    assert message.conversation_id == conversation.id
    assert (conversation.flow, conversation.state) == ("payment", "idle")
    assert providers.sms.status_callbacks[sent.sid] == f"{PUBLIC_BASE_URL}/webhooks/twilio/status"


async def test_a_reply_to_the_campaign_text_continues_the_conversation(app, client, phone,
                                                                      providers):
    await add(app, "ACC-1001", "+15555550100")
    await run(app)
    assert await phone("+15555550100").send("pay") == [
        "We have your email as m***@example.com. Reply OK, or send a new email."
    ]


async def test_a_creditor_without_disclosure_text_gets_the_default_one(app, client, providers):
    account = await add(app, "ACC-2", "+15555550102")
    async with app[appkeys.DATABASE].session() as session:
        session.add(Creditor(code="acme", name="Acme Billing", disclosure="", settings={}))
        await session.flush()
        (await session.get(Account, account.id)).creditor_code = "acme"  # type: ignore[union-attr]
        await session.commit()
    await run(app)
    (sent,) = providers.sms.outbox
    assert sent.body.startswith("Acme Billing: Hi Maria")
    assert DEFAULT_DISCLOSURE in sent.body


async def test_long_or_odd_text_still_fits_and_stays_gsm7(app, client, providers):
    await add(app, "ACC-3", "+15555550103", first_name="Zoë-Anne Marie Élodie 😀 Q" + "x" * 50)
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        creditor.name = ("The \u201cVery\u201d Long Name of a Regional Recovery Agency \u2014 "
                         + "N" * 60)
        creditor.disclosure = ("This communication is from a debt collector\u2019s office. "
                               "This is an attempt to collect a debt and any information obtained "
                               "will be used for that purpose. " * 2)
        account = await session.scalar(select(Account).where(Account.account_ref == "ACC-3"))
        account.description = "D\u00e9j\u00e0 vu card \u2022 " + "d" * 100
        await session.commit()
    await run(app)
    (sent,) = providers.sms.outbox
    assert is_gsm7(sent.body)
    assert "debt collector's office" in sent.body  # the disclosure is kept whole...
    assert segment_count(sent.body) > 2  # ...and only it may make the text longer
    core = sent.body.split("This communication is from")[0]
    assert segment_count(core + "Reply STOP to opt out.") <= 2
    assert "your balance on your account is $1,250.00" in sent.body
    assert "Reply STOP to opt out." in sent.body


# --- who gets it ---

async def test_quiet_hours_opt_outs_and_carrier_opt_outs(app, client, providers):
    # 15:00 UTC: 10 a.m. in New York, 8 a.m. in Denver, 7 a.m. in Los Angeles, 5 a.m. in Honolulu.
    await add(app, "NY", "+15555550201", "America/New_York")
    await add(app, "DEN", "+15555550202", "America/Denver")
    await add(app, "LA", "+15555550203", "America/Los_Angeles")
    await add(app, "HNL", "+15555550204", "Pacific/Honolulu")
    await add(app, "OPTED", "+15555550205")
    await add(app, "CARRIER", "+15555550206")
    await add(app, "NOPHONE", None)
    await add(app, "ZERO", "+15555550208", balance="0.00")
    async with app[appkeys.DATABASE].session() as session:
        session.add(OptOut(phone="+15555550205", opted_out=True, keyword="STOP", channel="sms",
                           updated_at=app[appkeys.CLOCK].now()))
        await session.commit()
    providers.sms.block("+15555550206")

    report = await run(app)
    assert report.summary == ("2 sent, 1 skipped (opted out), 1 opted out at the carrier "
                              "(recorded), 2 held (quiet hours), 0 failed")
    assert sorted(s.to for s in providers.sms.outbox) == ["+15555550201", "+15555550202"]
    opt_out = (await rows(app, OptOut, OptOut.phone == "+15555550206"))[0]
    assert (opt_out.opted_out, opt_out.channel) == (True, "carrier")
    # The carrier's refusal left no usable link and no message behind.
    assert await rows(app, Message, Message.phone == "+15555550206") == []
    carrier_links = await rows(app, Link, Link.revoked_at.is_(None))
    assert len(carrier_links) == 2

    # An hour later it is 8 a.m. in Los Angeles: only the one held there goes out now.
    app[appkeys.CLOCK].advance(timedelta(hours=1))
    providers.sms.clear()
    report = await run(app)
    assert [s.to for s in providers.sms.outbox] == ["+15555550203"]
    assert report.sms.sent == 1 and report.sms.quiet_hours == 1 and report.sms.already_sent == 2
    assert report.sms.carrier_opted_out == 0 and report.sms.opted_out == 2


async def test_an_account_whose_zone_nobody_gave_waits_for_daytime_in_every_us_zone(
    app, client, providers
):
    # Imported without a time zone: none is made up for it (Reg F: without better knowledge,
    # every place the customer may be). 15:00 UTC is 10 a.m. in New York, 5 a.m. in Honolulu.
    unknown = await add(app, "UNKNOWN", "+15555550209", None)  # type: ignore[arg-type]
    await add(app, "NY", "+15555550201", "America/New_York")
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Account, unknown.id)).timezone is None  # type: ignore[union-attr]

    report = await run(app)
    assert [s.to for s in providers.sms.outbox] == ["+15555550201"]
    assert report.sms.quiet_hours == 1
    app[appkeys.CLOCK].advance(timedelta(hours=3))  # 8 a.m. in Honolulu: daytime everywhere
    providers.sms.clear()
    await run(app)
    assert [s.to for s in providers.sms.outbox] == ["+15555550209"]


async def test_the_evening_limit_is_9_pm_local(app, client, providers):
    await add(app, "NY", "+15555550201", "America/New_York")
    await add(app, "CHI", "+15555550202", "America/Chicago")
    app[appkeys.CLOCK].set(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))  # 9:00 p.m. NY, 8 p.m. CHI
    report = await run(app)
    assert [s.to for s in providers.sms.outbox] == ["+15555550202"]
    assert report.sms.quiet_hours == 1


async def test_selecting_accounts_and_creditors(app, client, providers):
    await add(app, "ACC-1", "+15555550301")
    await add(app, "ACC-2", "+15555550302")
    await add(app, "ACC-3", None)
    await add(app, "ACC-4", "+15555550304", balance="0")
    report = await run(app, account_refs=["acc-2", "ACC-3", "ACC-4", "NOPE-9"])
    assert [s.to for s in providers.sms.outbox] == ["+15555550302"]
    assert report.summary == ("1 sent, 1 without a phone, 1 with nothing owed, 1 not found, "
                              "0 failed")
    assert report.unknown == ["NOPE-9"]

    report = await run(app, creditor="northwind")
    assert report.sms.sent == 1 and report.sms.already_sent == 1  # ACC-1 now; ACC-2 was just texted
    report = await run(app, creditor="northwind", account_refs=["ACC-1"])
    assert report.sms.already_sent == 1
    with pytest.raises(CampaignError, match="no creditor with the code 'nobody'"):
        await run(app, creditor="nobody")


async def test_a_rerun_texts_nobody_twice_until_the_link_has_expired(app, client, providers):
    await add(app, "ACC-1", "+15555550301")
    assert (await run(app)).sms.sent == 1
    assert (await run(app)).summary == "0 sent, 1 skipped (link already sent), 0 failed"
    app[appkeys.CLOCK].advance(timedelta(hours=app[appkeys.SETTINGS].link_lifetime_hours))
    assert (await run(app)).sms.sent == 1
    assert len(providers.sms.outbox) == 2


async def test_a_number_shared_by_two_accounts_gets_one_text(app, client, providers):
    await add(app, "ACC-1", "+15555550301")
    await add(app, "ACC-2", "+15555550301", balance="10.00")
    report = await run(app)
    assert len(providers.sms.outbox) == 1 and report.sms.shared_phone == 1


async def test_progress_is_reported_per_account(app, client, providers):
    for n in range(3):
        await add(app, f"ACC-{n}", f"+1555555040{n}")
    totals: list[int] = []
    done: list[int] = []
    await run(app, progress=done.append, on_total=totals.append)
    assert totals == [3] and sum(done) == 3


# --- delivery status, through the signed webhook ---

async def test_status_callbacks_update_the_message_and_21610_records_an_opt_out(app, client,
                                                                                providers):
    await add(app, "ACC-1", "+15555550301")
    await add(app, "ACC-2", "+15555550302")
    await run(app)
    first, second = providers.sms.outbox
    response = await signed_post(client, "/webhooks/twilio/status", {
        "MessageSid": first.sid, "MessageStatus": "delivered", "To": first.to})
    assert response.status == 204
    response = await signed_post(client, "/webhooks/twilio/status", {
        "MessageSid": second.sid, "MessageStatus": "undelivered", "ErrorCode": "21610",
        "To": second.to})
    assert response.status == 204
    statuses = {m.provider_sid: (m.status, m.error_code) for m in await rows(app, Message)}
    assert statuses == {first.sid: ("delivered", None), second.sid: ("undelivered", "21610")}
    (opt_out,) = await rows(app, OptOut)
    assert (opt_out.phone, opt_out.opted_out, opt_out.channel) == (second.to, True, "carrier")

    # A forged callback changes nothing.
    response = await signed_post(client, "/webhooks/twilio/status", {
        "MessageSid": first.sid, "MessageStatus": "failed"}, token="wrong")
    assert response.status == 403
    assert (await rows(app, Message, Message.provider_sid == first.sid))[0].status == "delivered"

    # Next campaign, once the links have lapsed: the opted-out number is skipped.
    app[appkeys.CLOCK].advance(timedelta(days=4))
    providers.sms.clear()
    report = await run(app)
    assert [s.to for s in providers.sms.outbox] == [first.to]
    assert report.sms.opted_out == 1


# --- the real Twilio SDK against the local fake ---

async def test_through_the_twilio_sdk(app, client, twilio_fake, twilio_sms):
    await add(app, "ACC-1", "+15555550301")
    await add(app, "ACC-2", "+15555550302")
    await add(app, "ACC-3", "+15555550303")
    twilio_fake.opt_out("+15555550302")
    report = await run(app, sms=twilio_sms, account_refs=["ACC-1", "ACC-2"])
    assert report.summary == "1 sent, 1 opted out at the carrier (recorded), 0 failed"
    (sent,) = twilio_fake.messages
    assert sent["to"] == "+15555550301"
    request = next(r for r in twilio_fake.requests if r.status == 201)
    assert request.form["StatusCallback"] == f"{PUBLIC_BASE_URL}/webhooks/twilio/status"
    assert DISCLOSURE in request.form["Body"] and LINK.search(request.form["Body"])
    (message,) = await rows(app, Message)
    assert message.provider_sid == sent["sid"] and message.body == request.form["Body"]
    assert (await rows(app, OptOut))[0].phone == "+15555550302"

    # Twilio fails: reported, the link it carried no longer works, and nothing is recorded
    # as sent, so the next run tries again.
    twilio_fake.fail_next(500, 20500, "Internal Server Error")
    report = await run(app, sms=twilio_sms, account_refs=["ACC-3"])
    assert report.sms.sent == 0
    assert report.sms.failed == [("ACC-3", "Twilio refused the message (HTTP 500, error 20500): "
                                        "Unable to create record: Internal Server Error")]
    token = LINK.search(twilio_fake.requests[-1].form["Body"]).group(1)  # type: ignore[union-attr]
    assert (await client.get(f"/p/{token}")).status == 410
    assert (await run(app, sms=twilio_sms, account_refs=["ACC-3"])).sms.sent == 1
    sent_events = await rows(app, AuditEvent, AuditEvent.kind == "link_sent")
    assert len(sent_events) == 2


# --- quiet hours, the rule itself ---

@pytest.mark.parametrize(("local", "zone", "quiet"), [
    ("2026-11-25 07:59", "America/New_York", True),
    ("2026-11-25 08:00", "America/New_York", False),
    ("2026-11-25 20:59", "America/New_York", False),
    ("2026-11-25 21:00", "America/New_York", True),
    ("2026-07-01 07:30", "America/Los_Angeles", True),  # PDT
    ("2026-07-01 08:30", "America/Los_Angeles", False),
    ("2026-07-01 08:30", "America/Phoenix", False),  # no DST
    ("2026-03-08 03:30", "America/New_York", True),  # the night DST starts
])
def test_quiet_hours_in_the_customers_zone(local, zone, quiet):
    at = datetime.strptime(local, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone))
    assert in_quiet_hours(at.astimezone(UTC), zone, FlowSettings()) is quiet


def test_an_unknown_zone_is_quiet_unless_it_is_daytime_everywhere_in_the_us():
    settings = FlowSettings()
    ten_am_eastern = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 5 a.m. in Honolulu
    assert in_quiet_hours(ten_am_eastern, "Nowhere/Special", settings)
    assert in_quiet_hours(ten_am_eastern, "", settings)
    two_pm_hawaii = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)  # 7 p.m. in New York
    assert not in_quiet_hours(two_pm_hawaii, "Nowhere/Special", settings)


def test_creditor_quiet_hours_that_do_not_wrap_midnight():
    settings = FlowSettings(quiet_hours_start=0, quiet_hours_end=9)
    assert in_quiet_hours(datetime(2026, 11, 25, 13, 30, tzinfo=UTC), "America/New_York",
                          settings)  # 8:30 a.m.
    assert not in_quiet_hours(datetime(2026, 11, 26, 3, 30, tzinfo=UTC), "America/New_York",
                              settings)  # 10:30 p.m.


# --- the command itself ---

def test_the_send_links_command(database_url, tmp_path):
    """Real clock: the accounts sit in a zone where it is mid-afternoon now."""
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12  # local 14:00 = UTC + offset
    zone = f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"  # Etc/ signs are inverted
    csv_path = tmp_path / "accounts.csv"
    csv_path.write_text(
        "account_id,first_name,last_name,phone,email,balance,timezone,creditor\n"
        f"C-1,Ana,Silva,5555550601,,10.00,{zone},northwind\n"
        f"C-2,Bo,Li,5555550602,,20.00,{zone},northwind\n"
        f"C-3,Cy,Ng,5555550603,,0,{zone},northwind\n")
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_"))}
    # Not production (http): the sandbox outbox stands in for Twilio, which https would refuse.
    base_url = PUBLIC_BASE_URL.replace("https://", "http://")
    env.update(DATABASE_URL=database_url, SECRET_KEY="test-secret-key",
               PAYBOT_DATA_DIR=str(tmp_path / "var"), PUBLIC_BASE_URL=base_url)

    def paybot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    assert paybot("import-accounts", str(csv_path)).returncode == 0
    result = paybot("send-links", "--account", "C-1", "--account", "C-9")
    assert result.returncode == 1
    assert result.stdout.strip() == "1 sent, 1 not found, 0 failed"
    assert result.stderr.strip() == "paybot send-links: C-9: no account with that account_id"
    result = paybot("send-links", "--creditor", "northwind")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 sent, 1 skipped (link already sent), 0 failed"
    result = paybot("send-links", "--creditor", "nobody")
    assert result.returncode == 2
    assert "no creditor with the code 'nobody'" in result.stderr

    # On a terminal, a progress bar; the summary still goes to stdout.
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "send-links", "--account", "C-1", "--account", "C-2"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child has exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 0
    assert stdout.decode().strip() == "0 sent, 2 skipped (link already sent), 0 failed"
    assert "sending" in shown.decode() and "2/2" in shown.decode()

    outbox = [json.loads(line) for line in
              (tmp_path / "var" / "outbox" / "sms.jsonl").read_text().splitlines()]
    assert [m["to"] for m in outbox] == ["+15555550601", "+15555550602"]
    assert all(m["status_callback"] == f"{base_url}/webhooks/twilio/status" for m in outbox)
    assert outbox[0]["body"].startswith("northwind: Hi Ana, your balance on your account is "
                                        "$10.00.")
    assert DEFAULT_DISCLOSURE in outbox[0]["body"]


# --- one channel among two ---

async def test_the_text_is_audited_as_sms_and_an_email_link_does_not_count_as_a_text(
        app, client, providers):
    await add(app, "ACC-1", "+15555550301")
    assert (await run(app, via="email")).email.sent == 1
    report = await run(app)  # the default channel: SMS
    assert report.summary == "1 sent, 0 failed"
    events = await rows(app, AuditEvent, AuditEvent.kind == "link_sent")
    assert sorted(e.detail["channel"] for e in events) == ["email", "sms"]
    sms_event = next(e for e in events if e.detail["channel"] == "sms")
    (sms_link,) = await rows(app, Link, Link.id == sms_event.detail["link_id"])
    (token,) = LINK.findall(providers.sms.outbox[0].body)
    assert (await rows(app, Link, Link.token_sha256 == token_digest(token)))[0].id == sms_link.id
    assert (await run(app)).summary == "0 sent, 1 skipped (link already sent), 0 failed"


async def test_a_link_sent_event_from_before_email_existed_counts_as_a_text(app, client,
                                                                            providers):
    account = await add(app, "ACC-1", "+15555550301")
    async with app[appkeys.DATABASE].session() as session:
        session.add(AuditEvent(at=app[appkeys.CLOCK].now(), actor="bot", kind="link_sent",
                               account_id=account.id, phone="+15555550301",
                               detail={"sid": "SM-old"}))
        await session.commit()
    report = await run(app, via="both")
    assert report.summary == ("sms: 0 sent, 1 skipped (link already sent), 0 failed; "
                              "email: 1 sent, 0 failed")


async def test_a_long_number_in_the_description_shows_its_last_4_only(app, client, providers):
    await add(app, "ACC-1", "+15555550301")
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account).where(Account.account_ref == "ACC-1"))
        account.description = "Visa 4111 1111 1111 4821"  # type: ignore[union-attr]
        await session.commit()
    await run(app)
    (sent,) = providers.sms.outbox
    assert "your balance on Visa ****4821 is $1,250.00" in sent.body
    assert "4111" not in sent.body


def test_mask_numbers():
    assert mask_numbers("Acme Card ending 4821") == "Acme Card ending 4821"
    assert mask_numbers("Loan 1234-5678-9012") == "Loan ****9012"
    assert mask_numbers("acct 12345 and 9876543210") == "acct ****2345 and ****3210"
    assert mask_numbers("") == ""


async def test_an_unknown_channel_is_refused(app, client):
    with pytest.raises(CampaignError, match="--via must be sms, email or both"):
        await run(app, via="fax")


async def test_the_first_message_is_in_the_customers_language(app, client, phone, providers):
    await add(app, "ACC-1001", "+15555550100", language="es")
    await add(app, "ACC-1002", "+15555550102")
    # The customer at the English account's number chose Spanish by text: that choice wins.
    assert (await phone("+15555550102").send("espanol"))[0].startswith(
        "De acuerdo, le escribiremos en español.")
    assert (await run(app)).summary == "2 sent, 0 failed"
    bodies = {sent.to: sent.body for sent in providers.sms.outbox}
    for number in ("+15555550100", "+15555550102"):
        body = bodies[number]
        (token,) = LINK.findall(body)
        assert body == (
            "Northwind Recovery: Hola, Maria, su saldo en Acme Card ending 4821 es $1,250.00. "
            f"Responda PAGAR para pagar por mensaje o abra {PUBLIC_BASE_URL}/p/{token} "
            f"{DISCLOSURE} Responda ALTO para no recibir mas mensajes."
        )
        assert is_gsm7(body)
