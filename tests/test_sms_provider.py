"""SMS providers: the real twilio SDK against the local fake, and the sandbox."""

import json
import re
import socket

import pytest

from bot.providers.sms import (
    RecipientOptedOut,
    SandboxSms,
    SentSms,
    SmsError,
    SmsSender,
    TwilioSms,
)
from tests.fakes.twilio_api import DEFAULT_FROM

pytest_plugins = ["tests.fixtures_fakes"]

TO = "+15551234567"


def test_both_senders_fit_the_protocol():
    assert isinstance(SandboxSms(), SmsSender)
    sender = TwilioSms(account_sid="AC1", auth_token="t", from_number=DEFAULT_FROM)
    assert isinstance(sender, SmsSender)


# -- TwilioSms -------------------------------------------------------------


async def test_twilio_send_reaches_the_fake_with_basic_auth(twilio_sms, twilio_fake):
    sent = await twilio_sms.send(
        to=TO,
        body="Hi Maria, reply PAY to pay.",
        status_callback="https://pay.example/webhooks/twilio/status",
    )

    assert isinstance(sent, SentSms)
    assert re.fullmatch(r"SM[0-9a-f]{32}", sent.sid)
    assert sent == SentSms(sid=sent.sid, to=TO, body="Hi Maria, reply PAY to pay.", status="queued")

    [req] = twilio_fake.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{twilio_fake.account_sid}/Messages.json"
    assert req.auth == (twilio_fake.account_sid, twilio_fake.auth_token)
    assert req.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert req.headers["User-Agent"].startswith("twilio-python/")
    assert req.form == {
        "To": TO,
        "From": DEFAULT_FROM,
        "Body": "Hi Maria, reply PAY to pay.",
        "StatusCallback": "https://pay.example/webhooks/twilio/status",
    }
    assert req.status == 201
    assert twilio_fake.last["sid"] == sent.sid


async def test_twilio_send_without_status_callback_leaves_it_out(twilio_sms, twilio_fake):
    await twilio_sms.send(to=TO, body="Hello")
    assert "StatusCallback" not in twilio_fake.requests[0].form


async def test_twilio_send_is_reused_across_messages(twilio_sms, twilio_fake):
    first = await twilio_sms.send(to=TO, body="one")
    second = await twilio_sms.send(to="+15557654321", body="two")
    assert first.sid != second.sid
    assert [r.form["Body"] for r in twilio_fake.requests] == ["one", "two"]


async def test_twilio_messaging_service(twilio_fake):
    sender = TwilioSms(
        account_sid=twilio_fake.account_sid,
        auth_token=twilio_fake.auth_token,
        messaging_service_sid="MG" + "a" * 32,
        api_base=twilio_fake.base_url,
    )
    async with sender:
        sent = await sender.send(to=TO, body="via service")
    assert sent.status == "accepted"
    form = twilio_fake.requests[0].form
    assert form["MessagingServiceSid"] == "MG" + "a" * 32
    assert "From" not in form


async def test_twilio_unicode_body_arrives_intact(twilio_sms, twilio_fake):
    body = "Señor Núñez — 50 € ✓"
    sent = await twilio_sms.send(to=TO, body=body)
    assert sent.body == body
    assert twilio_fake.requests[0].form["Body"] == body


async def test_twilio_21610_is_recipient_opted_out(twilio_sms, twilio_fake):
    twilio_fake.opt_out(TO)
    with pytest.raises(RecipientOptedOut) as info:
        await twilio_sms.send(to=TO, body="Hello")
    err = info.value
    assert isinstance(err, SmsError)
    assert err.code == 21610
    assert err.status == 400
    assert err.to == TO
    assert twilio_fake.requests[0].status == 400
    assert twilio_fake.messages == []


async def test_twilio_bad_credentials_is_sms_error_without_the_token(twilio_fake):
    secret = "wrong-token-0123456789abcdef"
    sender = TwilioSms(
        account_sid=twilio_fake.account_sid,
        auth_token=secret,
        from_number=DEFAULT_FROM,
        api_base=twilio_fake.base_url,
    )
    try:
        with pytest.raises(SmsError) as info:
            await sender.send(to=TO, body="Hello")
    finally:
        await sender.close()
    err = info.value
    assert not isinstance(err, RecipientOptedOut)
    assert err.status == 401
    assert err.code == 20003
    assert "Authenticate" in str(err)
    for text in (str(err), repr(err), repr(err.args), repr(sender)):
        assert secret not in text
    assert err.__cause__ is None and err.__suppress_context__
    assert twilio_fake.requests[0].auth == (twilio_fake.account_sid, secret)


async def test_twilio_server_error_is_sms_error(twilio_sms, twilio_fake):
    twilio_fake.fail_next(500, 20500, "Internal Server Error")
    with pytest.raises(SmsError) as info:
        await twilio_sms.send(to=TO, body="Hello")
    assert info.value.status == 500
    assert info.value.code == 20500
    assert twilio_fake.auth_token not in str(info.value)


async def test_twilio_validation_error_is_sms_error(twilio_sms):
    with pytest.raises(SmsError) as info:
        await twilio_sms.send(to=TO, body="")
    assert info.value.code == 21602


async def test_twilio_unreachable_is_sms_error(no_external_network):
    # a port nobody listens on: bind one, then close it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = TwilioSms(
        account_sid="AC" + "1" * 32,
        auth_token="token-unreachable-123",
        from_number=DEFAULT_FROM,
        api_base=f"http://127.0.0.1:{port}",
        timeout=5,
    )
    try:
        with pytest.raises(SmsError) as info:
            await sender.send(to=TO, body="Hello")
    finally:
        await sender.close()
    assert "could not reach Twilio" in str(info.value)
    assert "token-unreachable-123" not in str(info.value)


async def test_twilio_env_edge_is_ignored(twilio_fake, twilio_sms, monkeypatch):
    # An edge in the environment must not rewrite the fake's host (nor any host).
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    sent = await twilio_sms.send(to=TO, body="Hello")
    assert sent.sid.startswith("SM")


async def test_network_guard_catches_the_real_twilio_host(no_external_network):
    # Without api_base the SDK aims at api.twilio.com: the guard must refuse it.
    sender = TwilioSms(account_sid="AC" + "2" * 32, auth_token="t" * 32, from_number=DEFAULT_FROM)
    try:
        with pytest.raises(SmsError):
            await sender.send(to=TO, body="Hello")
    finally:
        await sender.close()
    assert no_external_network.blocked == ["resolve api.twilio.com"]
    no_external_network.blocked.clear()  # expected here: don't fail this test at teardown


async def test_twilio_close_is_idempotent_and_closes_the_session(twilio_fake):
    sender = TwilioSms(
        account_sid=twilio_fake.account_sid,
        auth_token=twilio_fake.auth_token,
        from_number=DEFAULT_FROM,
        api_base=twilio_fake.base_url,
    )
    await sender.close()  # never opened: nothing to do
    await sender.send(to=TO, body="one")
    session = sender._http.session
    await sender.close()
    assert session.closed
    await sender.close()
    # a later send opens a fresh session (and the fixture-less close below ends it)
    await sender.send(to=TO, body="two")
    await sender.close()
    assert len(twilio_fake.messages) == 2


def test_twilio_needs_credentials_and_a_sender():
    with pytest.raises(ValueError):
        TwilioSms(account_sid="", auth_token="t", from_number=DEFAULT_FROM)
    with pytest.raises(ValueError):
        TwilioSms(account_sid="AC1", auth_token="", from_number=DEFAULT_FROM)
    with pytest.raises(ValueError):
        TwilioSms(account_sid="AC1", auth_token="t")


def test_twilio_repr_hides_the_token():
    sender = TwilioSms(account_sid="AC1", auth_token="sekrit-token", from_number=DEFAULT_FROM)
    assert "sekrit-token" not in repr(sender)


# -- SandboxSms ------------------------------------------------------------


async def test_sandbox_outbox_and_sids():
    sms = SandboxSms()
    a = await sms.send(to=TO, body="one")
    b = await sms.send(to="+15557654321", body="two", status_callback="https://x.example/s")
    assert a == SentSms(sid=f"SMsandbox_{sms._ids.run}_0001", to=TO, body="one", status="queued")
    assert b.sid == f"SMsandbox_{sms._ids.run}_0002"
    assert sms.outbox == [a, b]
    assert sms.status_callbacks == {b.sid: "https://x.example/s"}
    sms.clear()
    assert sms.outbox == []
    await sms.close()


async def test_sandbox_jsonl_file(tmp_path):
    path = tmp_path / "var" / "sms-outbox.jsonl"
    sms = SandboxSms(path)
    await sms.send(to=TO, body="Hi Maria — “quoted”", status_callback="https://x.example/s")
    await sms.send(to=TO, body="second")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["sid"] == sms.outbox[0].sid
    assert first["to"] == TO
    assert first["from"] == "+15005550006"
    assert first["body"] == "Hi Maria — “quoted”"
    assert first["status"] == "queued"
    assert first["status_callback"] == "https://x.example/s"
    assert first["segments"] == 1
    assert first["sent_at"].endswith("+00:00")
    assert json.loads(lines[1])["status_callback"] is None

    # a restarted sandbox on the same file appends, and never reuses a sid
    again = SandboxSms(path)
    sent = await again.send(to=TO, body="third")
    assert sent.sid not in {s.sid for s in sms.outbox}
    assert again.outbox == [sent]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


async def test_sandbox_simulates_21610_for_blocked_numbers(tmp_path):
    path = tmp_path / "out.jsonl"
    sms = SandboxSms(path)
    sms.block(TO)
    with pytest.raises(RecipientOptedOut) as info:
        await sms.send(to=TO, body="Hello")
    assert info.value.code == 21610
    assert info.value.to == TO
    assert sms.outbox == []
    assert not path.exists()
    sms.unblock(TO)
    assert (await sms.send(to=TO, body="Hello")).sid.endswith("_0001")


@pytest.mark.parametrize(
    ("to", "body", "code"),
    [
        ("5551234567", "hi", 21211),
        ("+1 555 123 4567", "hi", 21211),
        ("", "hi", 21211),
        (TO, "", 21602),
        (TO, "x" * 1601, 21617),
    ],
)
async def test_sandbox_refuses_what_twilio_refuses(to, body, code):
    sms = SandboxSms()
    with pytest.raises(SmsError) as info:
        await sms.send(to=to, body=body)
    assert info.value.code == code
    assert sms.outbox == []
