"""`paybot send-links --via email|both`: the campaign email, its link, its skip rules, per channel.

Through the sandbox (in process, and the CLI writing .eml files to the outbox) and through the
real sendgrid SDK against the local SendGrid fake.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account, AuditEvent, Creditor, Link, Message, OptOut
from bot.outreach.campaigns import send_links
from bot.outreach.compliance import DEFAULT_DISCLOSURE
from bot.security import token_digest
from tests.conftest import PUBLIC_BASE_URL
from tests.seed import add_account

ROOT = Path(__file__).resolve().parents[1]
DISCLOSURE = "This is a communication from a debt collector."
OPT_OUT = "To stop these emails, reply to this message with UNSUBSCRIBE."
# The commands run outside production (http): the sandbox outbox stands in for SendGrid, which
# production (https) would refuse to do.
COMMAND_BASE_URL = PUBLIC_BASE_URL.replace("https://", "http://")
LINK = re.compile(r"https?://" + re.escape(PUBLIC_BASE_URL.split("://")[1])
                  + r"/p/([A-Za-z0-9_-]+)")


async def add(app, ref: str, phone: str | None = None,  # type: ignore[no-untyped-def]
              email: str | None = "maria@example.com", timezone: str = "America/New_York",
              **kwargs) -> Account:
    return await add_account(app, ref=ref, phone=phone, email=email, timezone=timezone,
                             methods=(), **kwargs)


async def run(app, via: str = "email", **kwargs):  # type: ignore[no-untyped-def]
    providers = app[appkeys.PROVIDERS]
    kwargs.setdefault("sms", providers.sms)
    kwargs.setdefault("email", providers.email)
    return await send_links(settings=app[appkeys.SETTINGS], database=app[appkeys.DATABASE],
                            clock=app[appkeys.CLOCK], via=via, **kwargs)


async def rows(app, model, *where):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(model).where(*where)))


async def opens_the_portal(client, token: str) -> bool:  # type: ignore[no-untyped-def]
    response = await client.get(f"/p/{token}", allow_redirects=False)
    return response.status == 303 and response.headers["Location"] == "/portal/pay"


def eml_parts(path: Path) -> tuple[email.message.EmailMessage, str, str]:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return message, text, html  # type: ignore[return-value]


# --- the email ---

async def test_the_email_says_who_what_how_much_where_until_when_and_how_to_stop(app, client,
                                                                               providers):
    await add(app, "ACC-1001", phone="+15555550100")
    report = await run(app)
    assert report.summary == "email: 1 sent, 0 failed"
    assert providers.sms.outbox == []  # email only
    (sent,) = providers.email.outbox
    assert sent.to == "maria@example.com"
    assert sent.subject == "Maria, your secure payment link from Northwind Recovery"
    assert sent.sender == "Northwind Recovery <paybot@example.com>"  # the creditor, our address

    (token,) = set(LINK.findall(sent.text))
    url = f"{PUBLIC_BASE_URL}/p/{token}"
    for part in (sent.text, sent.html):
        assert "Northwind Recovery" in part and "Hi Maria," in part
        assert "Your balance on Acme Card ending 4821 is" in part and "$1,250.00" in part
        # 72 hours after 10 a.m. on Wednesday, in the account's zone
        assert "It works until Nov 28, 2026 at 10:00 AM EST." in part
        assert DISCLOSURE in part
        assert OPT_OUT in part
        assert "ACC-1001" not in part  # no account number
    assert f"\n{url}\n" in sent.text  # the plain address on a line of its own
    # In HTML: a button, and the address spelled out for clients that hide buttons.
    assert re.search(rf'<a href="{re.escape(url)}"[^>]*>Review and pay</a>', sent.html)
    assert f">{url}</a>" in sent.html
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in sent.html
    assert "<style" not in sent.html and "<script" not in sent.html  # inline styles only

    # The link opens the account's portal, without anything else asked.
    assert await opens_the_portal(client, token)

    (link,) = await rows(app, Link)
    assert link.purpose == "campaign" and link.token_sha256 == token_digest(token)
    assert link.expires_at == app[appkeys.CLOCK].now() + timedelta(hours=72)
    (event,) = await rows(app, AuditEvent, AuditEvent.kind == "link_sent")
    assert event.detail == {"channel": "email", "message_id": sent.message_id, "link_id": link.id}
    assert await rows(app, Message) == []  # the messages table is for texts


async def test_markup_in_names_is_escaped_in_html_and_kept_as_text_in_plain_text(app, client,
                                                                                 providers):
    await add(app, "ACC-1", first_name='<script>alert("x")</script> Ann')
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        creditor.name = "Smith & <b>Sons</b>"  # type: ignore[union-attr]
        account = await session.scalar(select(Account).where(Account.account_ref == "ACC-1"))
        account.description = 'Card "Gold" <img src=x onerror=alert(1)>'  # type: ignore[union-attr]
        await session.commit()
    await run(app)
    (sent,) = providers.email.outbox
    assert "<script" not in sent.html and "<img" not in sent.html and "<b>" not in sent.html
    assert "Hi &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Ann," in sent.html
    assert "Smith &amp; &lt;b&gt;Sons&lt;/b&gt;" in sent.html
    assert "Card &#34;Gold&#34; &lt;img src=x onerror=alert(1)&gt;" in sent.html
    assert 'Hi <script>alert("x")</script> Ann,' in sent.text  # plain text is not HTML
    assert sent.subject.endswith("from Smith & <b>Sons</b>")
    assert sent.sender == '"Smith & <b>Sons</b>" <paybot@example.com>'  # quoted: one address


async def test_no_ssn_and_no_full_account_number_in_the_email(app, client, providers):
    await add(app, "ACC-77", ssn="123-45-6789", dob="1980-02-03")
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account).where(Account.account_ref == "ACC-77"))
        account.description = "Visa 4111 1111 1111 4821"  # type: ignore[union-attr]
        await session.commit()
    await run(app)
    (sent,) = providers.email.outbox
    for part in (sent.subject, sent.text, sent.html):
        assert "6789" not in part and "123456789" not in part and "1980" not in part
        assert "4111" not in part and "ACC-77" not in part
    assert "Visa ****4821" in sent.text


async def test_a_creditor_without_disclosure_text_gets_the_default_one(app, client, providers):
    await add(app, "ACC-1")
    async with app[appkeys.DATABASE].session() as session:
        session.add(Creditor(code="acme", name="Acme Billing", disclosure="", settings={}))
        await session.flush()
        account = await session.scalar(select(Account).where(Account.account_ref == "ACC-1"))
        account.creditor_code = "acme"  # type: ignore[union-attr]
        await session.commit()
    await run(app)
    (sent,) = providers.email.outbox
    assert DEFAULT_DISCLOSURE in sent.text and DEFAULT_DISCLOSURE in sent.html
    assert sent.subject.endswith("from Acme Billing")


# --- who gets it ---

async def test_quiet_hours_apply_to_email_too(app, client, providers):
    # 15:00 UTC: 10 a.m. in New York, 7 a.m. in Los Angeles, 5 a.m. in Honolulu.
    await add(app, "NY", email="ny@example.com", timezone="America/New_York")
    await add(app, "LA", email="la@example.com", timezone="America/Los_Angeles")
    await add(app, "HNL", email="hnl@example.com", timezone="Pacific/Honolulu")
    report = await run(app)
    assert report.summary == "email: 1 sent, 2 held (quiet hours), 0 failed"
    assert [m.to for m in providers.email.outbox] == ["ny@example.com"]
    assert len(await rows(app, Link)) == 1  # no link minted for a held email

    app[appkeys.CLOCK].advance(timedelta(hours=1))  # 8 a.m. in Los Angeles
    report = await run(app)
    assert report.summary == ("email: 1 sent, 1 held (quiet hours), 1 skipped (link already "
                              "sent), 0 failed")
    assert [m.to for m in providers.email.outbox][1:] == ["la@example.com"]

    # 9 p.m. in New York is quiet again.
    await add(app, "NY-2", email="ny2@example.com", timezone="America/New_York")
    app[appkeys.CLOCK].set(datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    report = await run(app, account_refs=["NY-2"])
    assert report.email.quiet_hours == 1 and report.email.sent == 0


async def test_creditor_quiet_hours_apply_to_email(app, client, providers):
    await add(app, "NY", creditor_settings={"quiet_hours_start": 0, "quiet_hours_end": 11})
    assert (await run(app)).email.quiet_hours == 1  # 10 a.m. in New York
    app[appkeys.CLOCK].advance(timedelta(hours=1))
    assert (await run(app)).email.sent == 1


async def test_accounts_without_an_email_or_a_balance_are_counted(app, client, providers):
    await add(app, "A-1")
    await add(app, "A-2", phone="+15555550302", email=None)
    await add(app, "A-3", balance="0.00", email="zero@example.com")
    # Without --account, only accounts with an email and a balance are selected.
    assert (await run(app)).summary == "email: 1 sent, 0 failed"
    report = await run(app, account_refs=["A-1", "A-2", "A-3", "A-9"])
    assert report.summary == ("email: 0 sent, 1 skipped (link already sent), 1 without an email, "
                              "1 with nothing owed, 1 not found, 0 failed")


async def test_email_opt_outs_are_honoured_when_the_ledger_can_answer(app, client, providers):
    """The ledger has no email opt-out table yet; the check is a parameter until it has."""
    await add(app, "A-1", email="stop@example.com")
    await add(app, "A-2", email="go@example.com")
    asked: list[str] = []

    async def opted_out(session, address: str) -> bool:  # type: ignore[no-untyped-def]
        asked.append(address)
        return address == "stop@example.com"

    report = await run(app, email_opted_out=opted_out)
    assert report.summary == "email: 1 sent, 1 skipped (opted out), 0 failed"
    assert [m.to for m in providers.email.outbox] == ["go@example.com"]
    assert asked == ["stop@example.com", "go@example.com"]


async def test_a_texting_opt_out_does_not_stop_the_email(app, client, providers):
    """STOP by text revokes texts (TCPA, per number); email consent is separate."""
    await add(app, "A-1", phone="+15555550301", email="maria@example.com")
    async with app[appkeys.DATABASE].session() as session:
        session.add(OptOut(phone="+15555550301", opted_out=True, keyword="STOP", channel="sms",
                           updated_at=app[appkeys.CLOCK].now()))
        await session.commit()
    report = await run(app, via="both")
    assert report.summary == "sms: 0 sent, 1 skipped (opted out), 0 failed; email: 1 sent, 0 failed"


# --- both channels ---

async def test_both_sends_each_allowed_channel_with_a_link_of_its_own_and_counts_each(
        app, client, providers):
    await add(app, "A-1", phone="+15555550301", email="a1@example.com")
    await add(app, "A-2", phone="+15555550302", email="a2@example.com")
    await add(app, "A-3", phone="+15555550303", email=None)  # no email
    await add(app, "A-4", phone=None, email="a4@example.com")  # no phone
    await add(app, "A-5", phone="+15555550305", email="a5@example.com")  # opted out of texts
    await add(app, "A-6", phone="+15555550306", email="a6@example.com",
              timezone="America/Los_Angeles")  # 7 a.m.: neither
    async with app[appkeys.DATABASE].session() as session:
        session.add(OptOut(phone="+15555550305", opted_out=True, keyword="STOP", channel="sms",
                           updated_at=app[appkeys.CLOCK].now()))
        await session.commit()

    report = await run(app, via="both")
    assert report.summary == (
        "sms: 3 sent, 1 skipped (opted out), 1 held (quiet hours), 1 without a phone, 0 failed; "
        "email: 4 sent, 1 held (quiet hours), 1 without an email, 0 failed")
    assert sorted(m.to for m in providers.sms.outbox) == [
        "+15555550301", "+15555550302", "+15555550303"]
    assert sorted(m.to for m in providers.email.outbox) == [
        "a1@example.com", "a2@example.com", "a4@example.com", "a5@example.com"]

    # Each channel's link is its own, both stored as hashes, both opening the portal.
    sms_token = LINK.findall(next(m.body for m in providers.sms.outbox
                                  if m.to == "+15555550301"))[0]
    email_token = LINK.findall(next(m.text for m in providers.email.outbox
                                    if m.to == "a1@example.com"))[0]
    assert sms_token != email_token
    links = await rows(app, Link)
    assert len(links) == 7 and {link.purpose for link in links} == {"campaign"}
    assert {token_digest(sms_token), token_digest(email_token)} <= {
        link.token_sha256 for link in links}
    assert await opens_the_portal(client, sms_token)
    assert await opens_the_portal(client, email_token)

    events = await rows(app, AuditEvent, AuditEvent.kind == "link_sent")
    assert sorted(e.detail["channel"] for e in events) == ["email"] * 4 + ["sms"] * 3


async def test_a_rerun_sends_no_channel_twice_until_its_link_has_expired(app, client,
                                                                         providers):
    await add(app, "A-1", phone="+15555550301")
    assert (await run(app, via="sms")).sms.sent == 1
    # The text does not stand in for the email: the email still goes.
    assert (await run(app, via="both")).summary == (
        "sms: 0 sent, 1 skipped (link already sent), 0 failed; email: 1 sent, 0 failed")
    assert (await run(app, via="both")).summary == (
        "sms: 0 sent, 1 skipped (link already sent), 0 failed; "
        "email: 0 sent, 1 skipped (link already sent), 0 failed")
    assert (len(providers.sms.outbox), len(providers.email.outbox)) == (1, 1)
    assert len(await rows(app, Link)) == 2

    app[appkeys.CLOCK].advance(timedelta(hours=app[appkeys.SETTINGS].link_lifetime_hours))
    assert (await run(app, via="both")).summary == ("sms: 1 sent, 0 failed; "
                                                    "email: 1 sent, 0 failed")


async def test_a_shared_email_address_gets_each_account_its_own_email(app, client, providers):
    await add(app, "A-1", email="family@example.com")
    await add(app, "A-2", email="family@example.com", balance="10.00", first_name="Luis")
    assert (await run(app)).email.sent == 2
    assert [m.subject.split(",")[0] for m in providers.email.outbox] == ["Maria", "Luis"]


# --- the real sendgrid SDK against the local fake ---

async def test_through_the_sendgrid_sdk(app, client, sendgrid_fake, sendgrid_email):
    await add(app, "A-1", email="maria@example.com")
    report = await run(app, email=sendgrid_email)
    assert report.summary == "email: 1 sent, 0 failed"
    (request,) = sendgrid_fake.requests
    assert request.status == 202
    body = sendgrid_fake.last
    assert body["personalizations"] == [{"to": [{"email": "maria@example.com"}]}]
    assert body["subject"] == "Maria, your secure payment link from Northwind Recovery"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    text = sendgrid_fake.content(body, "text/plain")
    html = sendgrid_fake.content(body, "text/html")
    (token,) = set(LINK.findall(text))  # type: ignore[arg-type]
    assert f'href="{PUBLIC_BASE_URL}/p/{token}"' in html  # type: ignore[operator]
    for part in (text, html):
        assert DISCLOSURE in part and OPT_OUT in part and "$1,250.00" in part  # type: ignore[operator]
    assert await opens_the_portal(client, token)
    (event,) = await rows(app, AuditEvent, AuditEvent.kind == "link_sent")
    assert event.detail["message_id"] == request.message_id


async def test_a_sendgrid_failure_is_reported_and_leaves_no_working_link(app, client,
                                                                         sendgrid_fake,
                                                                         sendgrid_email):
    await add(app, "A-1", email="maria@example.com")
    sendgrid_fake.fail_next(500, "Internal Server Error")
    report = await run(app, email=sendgrid_email)
    assert report.summary == "email: 0 sent, 1 failed"
    assert report.failed == [("email", "A-1", "SendGrid refused the message (HTTP 500): "
                                               "Internal Server Error")]
    sent_text = sendgrid_fake.content(sendgrid_fake.requests[-1].body, "text/plain")
    token = LINK.search(sent_text).group(1)  # type: ignore[arg-type, union-attr]
    assert (await client.get(f"/p/{token}", allow_redirects=False)).status == 410
    assert await rows(app, AuditEvent, AuditEvent.kind == "link_sent") == []
    # Nothing recorded as sent: the next run tries again.
    assert (await run(app, email=sendgrid_email)).email.sent == 1


# --- the command ---

def _afternoon_zone() -> str:
    """A zone where it is mid-afternoon now (the command runs on the real clock)."""
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12  # local 14:00 = UTC + offset
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"  # Etc/ signs are inverted


def _command_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_"))}
    env.update(DATABASE_URL=database_url, SECRET_KEY="test-secret-key",
               PAYBOT_DATA_DIR=str(tmp_path / "var"), PUBLIC_BASE_URL=COMMAND_BASE_URL)
    return env


def _write_accounts(tmp_path: Path) -> Path:
    zone = _afternoon_zone()
    csv_path = tmp_path / "accounts.csv"
    csv_path.write_text(
        "account_id,first_name,last_name,phone,email,balance,timezone,creditor,ssn\n"
        f"C-1,Ana,Silva,5555550601,ana@example.com,10.00,{zone},northwind,123-45-6789\n"
        f"C-2,<script>Bo</script>,Li,5555550602,bo@example.com,20.00,{zone},northwind,\n"
        f"C-3,Cy,Ng,5555550603,,30.00,{zone},northwind,\n"
        f"C-4,Di,Ox,,di@example.com,40.00,{zone},northwind,\n")
    return csv_path


async def test_the_command_with_the_sandbox_outbox(app, client, database_url, tmp_path):
    env = _command_env(database_url, tmp_path)

    def paybot(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    assert paybot("import-accounts", str(_write_accounts(tmp_path))).returncode == 0
    result = paybot("send-links", "--via", "email", "--account", "C-1", "--account", "C-9")
    assert result.returncode == 1
    assert result.stdout.strip() == "email: 1 sent, 1 not found, 0 failed"
    assert result.stderr.strip() == "paybot send-links: C-9: no account with that account_id"

    result = paybot("send-links", "--via", "both", "--creditor", "northwind")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "sms: 3 sent, 1 without a phone, 0 failed; "
        "email: 2 sent, 1 skipped (link already sent), 1 without an email, 0 failed")
    result = paybot("send-links", "--via", "both")
    assert result.stdout.strip() == (
        "sms: 0 sent, 3 skipped (link already sent), 1 without a phone, 0 failed; "
        "email: 0 sent, 3 skipped (link already sent), 1 without an email, 0 failed")
    result = paybot("send-links", "--via", "fax")
    assert result.returncode == 2 and "invalid choice: 'fax'" in result.stderr

    outbox = tmp_path / "var" / "outbox" / "email"
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 3  # C-1 once, then C-2 and C-4: nothing new on the re-run
    messages = [eml_parts(path) for path in files]
    assert [str(m["To"]) for m, _, _ in messages] == [
        "ana@example.com", "bo@example.com", "di@example.com"]

    message, text, html = messages[0]
    assert message["Subject"] == "Ana, your secure payment link from northwind"
    assert message.get_content_type() == "multipart/alternative"
    (token,) = set(LINK.findall(text))
    assert f'href="{COMMAND_BASE_URL}/p/{token}"' in html
    for part in (text, html):
        assert "Hi Ana," in part and "$10.00" in part
        assert DEFAULT_DISCLOSURE in part and OPT_OUT in part
        assert "6789" not in part and "C-1" not in part

    _, text, html = messages[1]
    assert "Hi <script>Bo</script>," in text
    assert "Hi &lt;script&gt;Bo&lt;/script&gt;," in html and "<script" not in html

    # The links work in the web app (the command ran on the real clock).
    app[appkeys.CLOCK].set(datetime.now(UTC))
    for _, text, _ in messages:
        assert await opens_the_portal(client, LINK.search(text).group(1))  # type: ignore[union-attr]


async def test_the_command_through_sendgrid(app, database_url, tmp_path, sendgrid_fake):
    """SENDGRID_API_KEY and SENDGRID_HOST make the command use the sendgrid SDK."""
    env = _command_env(database_url, tmp_path)

    async def paybot(*args: str, **extra: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env={**env, **extra},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode or 0, stdout.decode(), stderr.decode()

    code, _, _ = await paybot("import-accounts", str(_write_accounts(tmp_path)))
    assert code == 0
    sendgrid = {"SENDGRID_API_KEY": sendgrid_fake.api_key, "SENDGRID_HOST": sendgrid_fake.base_url,
                "SENDGRID_FROM_EMAIL": "billing@northwind.example"}
    sendgrid_fake.fail_next(500, "Internal Server Error")
    code, stdout, stderr = await paybot("send-links", "--via", "email", **sendgrid)
    assert code == 1
    assert stdout.strip() == "email: 2 sent, 1 failed"  # C-3 has no email: not selected
    assert "paybot send-links: C-1: email: SendGrid refused the message (HTTP 500)" in stderr
    assert sendgrid_fake.api_key not in stdout + stderr
    assert [m["personalizations"][0]["to"][0]["email"] for m in sendgrid_fake.messages] == [
        "bo@example.com", "di@example.com"]
    assert all(m["from"]["email"] == "billing@northwind.example" for m in sendgrid_fake.messages)
    assert not (tmp_path / "var" / "outbox" / "email").exists()  # not the sandbox

    code, stdout, _ = await paybot("send-links", "--via", "email", **sendgrid)
    assert (code, stdout.strip()) == (
        0, "email: 1 sent, 2 skipped (link already sent), 0 failed")
    assert sendgrid_fake.messages[-1]["personalizations"][0]["to"][0]["email"] == "ana@example.com"
