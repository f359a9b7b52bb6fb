"""Email providers: the real sendgrid SDK against the local fake, and the sandbox."""

import email
import email.policy
import re
import socket

import pytest

from bot.providers.email import (
    Attachment,
    EmailError,
    EmailSender,
    SandboxEmail,
    SandboxEmailMessage,
    SendGridEmail,
    SentEmail,
)

pytest_plugins = ["tests.fixtures_fakes"]

TO = "maria@example.com"
PDF = Attachment("receipt-P-7K3Q.pdf", "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n")
ICS = Attachment("plan.ics", "text/calendar", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
TEXT = "Hi Maria,\n\nYour payment of $50.00 is scheduled for Dec 15, 2026.\nRef P-7K3Q"
HTML = "<p>Hi Maria,</p><p>Your payment of <b>$50.00</b> is scheduled for Dec 15, 2026.</p>"


def test_both_senders_fit_the_protocol():
    assert isinstance(SandboxEmail(), EmailSender)
    assert isinstance(SendGridEmail(api_key="SG.x", from_email="a@b.example"), EmailSender)


# -- SendGridEmail ---------------------------------------------------------


async def test_sendgrid_posts_text_html_and_attachments(sendgrid_email, sendgrid_fake):
    sent = await sendgrid_email.send(
        to=TO,
        subject="Your payment is scheduled",
        text=TEXT,
        html=HTML,
        attachments=(PDF, ICS),
    )

    assert isinstance(sent, SentEmail)
    assert sent.to == TO and sent.subject == "Your payment is scheduled"
    [req] = sendgrid_fake.requests
    assert req.path == "/v3/mail/send"
    assert req.status == 202
    assert sent.message_id == req.message_id and sent.message_id
    assert req.headers["Authorization"] == f"Bearer {sendgrid_fake.api_key}"
    assert req.headers["Content-Type"].startswith("application/json")

    body = sendgrid_fake.last
    assert body["from"] == {"email": "billing@northwind.example", "name": "Northwind Recovery"}
    assert body["personalizations"] == [{"to": [{"email": TO}]}]
    assert body["subject"] == "Your payment is scheduled"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert sendgrid_fake.content(body, "text/plain") == TEXT
    assert sendgrid_fake.content(body, "text/html") == HTML
    assert sendgrid_fake.attachments(body) == [
        ("receipt-P-7K3Q.pdf", "application/pdf", PDF.data),
        ("plan.ics", "text/calendar", ICS.data),
    ]
    assert all(a["disposition"] == "attachment" for a in body["attachments"])


async def test_sendgrid_without_attachments_and_reply_to(sendgrid_fake):
    sender = SendGridEmail(
        api_key=sendgrid_fake.api_key,
        from_email="billing@northwind.example",
        reply_to="help@northwind.example",
        host=sendgrid_fake.base_url,
    )
    await sender.send(to=TO, subject="Hello", text="plain only", html="")
    body = sendgrid_fake.last
    assert body["from"] == {"email": "billing@northwind.example"}
    assert body["reply_to"] == {"email": "help@northwind.example"}
    assert body["content"] == [{"type": "text/plain", "value": "plain only"}]
    assert "attachments" not in body
    await sender.close()


async def test_sendgrid_unicode_subject_and_body(sendgrid_email, sendgrid_fake):
    await sendgrid_email.send(
        to=TO, subject="Señora Núñez — recibo", text="Pago: 50 € ✓", html="<p>Pago: 50 € ✓</p>"
    )
    body = sendgrid_fake.last
    assert body["subject"] == "Señora Núñez — recibo"
    assert sendgrid_fake.content(body, "text/plain") == "Pago: 50 € ✓"


async def test_sendgrid_bad_key_is_email_error_without_the_key(sendgrid_fake):
    secret = "SG.wrong-key-0123456789abcdef"
    sender = SendGridEmail(
        api_key=secret, from_email="a@northwind.example", host=sendgrid_fake.base_url
    )
    with pytest.raises(EmailError) as info:
        await sender.send(to=TO, subject="Hi", text="t", html="<p>h</p>")
    err = info.value
    assert err.status == 401
    assert "authorization grant is invalid" in str(err)
    for text in (str(err), repr(err), repr(err.args), repr(sender)):
        assert secret not in text
    assert err.__cause__ is None and err.__suppress_context__
    assert sendgrid_fake.requests[0].headers["Authorization"] == f"Bearer {secret}"
    assert sendgrid_fake.messages == []


async def test_sendgrid_server_error_is_email_error(sendgrid_email, sendgrid_fake):
    sendgrid_fake.fail_next(503, "Service Unavailable")
    with pytest.raises(EmailError) as info:
        await sendgrid_email.send(to=TO, subject="Hi", text="t", html="<p>h</p>")
    assert info.value.status == 503
    assert "Service Unavailable" in str(info.value)


async def test_sendgrid_unreachable_is_email_error(no_external_network):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = SendGridEmail(
        api_key="SG.unreachable-key",
        from_email="a@northwind.example",
        host=f"http://127.0.0.1:{port}",
        timeout=5,
    )
    with pytest.raises(EmailError) as info:
        await sender.send(to=TO, subject="Hi", text="t", html="<p>h</p>")
    assert "could not reach SendGrid" in str(info.value)
    assert "SG.unreachable-key" not in str(info.value)


async def test_network_guard_catches_the_real_sendgrid_host(no_external_network):
    sender = SendGridEmail(api_key="SG.x", from_email="a@northwind.example")  # default host
    with pytest.raises(EmailError):
        await sender.send(to=TO, subject="Hi", text="t", html="<p>h</p>")
    assert no_external_network.blocked == ["resolve api.sendgrid.com"]
    no_external_network.blocked.clear()  # expected here: don't fail this test at teardown


@pytest.mark.parametrize(
    ("to", "subject", "text", "html"),
    [
        ("not-an-address", "Hi", "t", "h"),
        ("a@b.example\r\nBcc: x@y.example", "Hi", "t", "h"),
        (TO, "two\nlines", "t", "h"),
        (TO, " ", "t", "h"),
        (TO, "Hi", "", ""),
    ],
)
async def test_both_refuse_bad_input_before_sending(
    sendgrid_email, sendgrid_fake, to, subject, text, html
):
    with pytest.raises(EmailError):
        await sendgrid_email.send(to=to, subject=subject, text=text, html=html)
    with pytest.raises(EmailError):
        await SandboxEmail().send(to=to, subject=subject, text=text, html=html)
    assert sendgrid_fake.requests == []


def test_sendgrid_needs_key_and_sender():
    with pytest.raises(ValueError):
        SendGridEmail(api_key="", from_email="a@b.example")
    with pytest.raises(ValueError):
        SendGridEmail(api_key="SG.x", from_email="")


# -- SandboxEmail ----------------------------------------------------------


async def test_sandbox_writes_a_readable_eml(tmp_path):
    outbox = tmp_path / "var" / "outbox"
    sandbox = SandboxEmail(
        outbox, from_email="billing@northwind.example", from_name="Northwind Recovery"
    )
    sent = await sandbox.send(
        to=TO, subject="Your payment is scheduled", text=TEXT, html=HTML, attachments=(PDF, ICS)
    )
    message_id = f"sandbox_{sandbox._ids.run}_0001"
    assert sent == SentEmail(message_id=message_id, to=TO, subject="Your payment is scheduled")

    [path] = sorted(outbox.glob("*.eml"))
    assert path.name == "0001-your-payment-is-scheduled.eml"
    assert not list(outbox.glob("*.tmp"))
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["From"] == "Northwind Recovery <billing@northwind.example>"
    assert msg["To"] == TO
    assert msg["Subject"] == "Your payment is scheduled"
    assert msg["Message-ID"] == f"<{message_id}@paybot.sandbox>"
    assert msg["Date"]
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.get_body(preferencelist=("plain",)).get_content().rstrip("\n") == TEXT
    assert msg.get_body(preferencelist=("html",)).get_content().rstrip("\n") == HTML
    attachments = [
        (p.get_filename(), p.get_content_type(), p.get_payload(decode=True))
        for p in msg.iter_attachments()
    ]
    assert attachments == [
        ("receipt-P-7K3Q.pdf", "application/pdf", PDF.data),
        ("plan.ics", "text/calendar", ICS.data),
    ]

    [kept] = sandbox.outbox
    assert isinstance(kept, SandboxEmailMessage) and isinstance(kept, SentEmail)
    assert (kept.message_id, kept.to, kept.subject) == (sent.message_id, TO, sent.subject)
    assert (kept.text, kept.html, kept.attachments, kept.path) == (TEXT, HTML, (PDF, ICS), path)


async def test_sandbox_without_attachments_is_multipart_alternative(tmp_path):
    sandbox = SandboxEmail(tmp_path)
    await sandbox.send(to=TO, subject="Señora Núñez — recibo", text="Pago: 50 € ✓", html="<p>✓</p>")
    [path] = tmp_path.glob("*.eml")
    assert path.name == "0001-se-ora-n-ez-recibo.eml"
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Subject"] == "Señora Núñez — recibo"
    assert msg.get_body(("plain",)).get_content().rstrip("\n") == "Pago: 50 € ✓"
    # headers are RFC 2047-encoded; bodies stay readable UTF-8 in a text editor
    raw = path.read_bytes().decode("utf-8")
    assert re.search(r"^Subject: =\?utf-8\?", raw, re.M)
    assert "Pago: 50 € ✓" in raw


async def test_sandbox_html_only_and_text_only(tmp_path):
    sandbox = SandboxEmail(tmp_path)
    await sandbox.send(to=TO, subject="html", text="", html="<p>only html</p>")
    await sandbox.send(to=TO, subject="text", text="only text", html="")
    first, second = sorted(tmp_path.glob("*.eml"))
    m1 = email.message_from_bytes(first.read_bytes(), policy=email.policy.default)
    m2 = email.message_from_bytes(second.read_bytes(), policy=email.policy.default)
    assert m1.get_content_type() == "text/html"
    assert m2.get_content_type() == "text/plain"


async def test_sandbox_numbering_continues_after_existing_files(tmp_path):
    first = SandboxEmail(tmp_path)
    await first.send(to=TO, subject="one", text="1", html="<p>1</p>")
    await first.send(to=TO, subject="two", text="2", html="<p>2</p>")
    again = SandboxEmail(tmp_path)
    sent = await again.send(to=TO, subject="three", text="3", html="<p>3</p>")
    assert sent.message_id not in {m.message_id for m in first.outbox}
    assert sorted(p.name for p in tmp_path.glob("*.eml")) == [
        "0001-one.eml",
        "0002-two.eml",
        "0003-three.eml",
    ]


async def test_sandbox_in_memory_only():
    sandbox = SandboxEmail()
    sent = await sandbox.send(to=TO, subject="Hi", text="t", html="<p>h</p>")
    assert sandbox.outbox[0].path is None
    assert sandbox.outbox == [sandbox.outbox[0]]
    assert sent.message_id == f"sandbox_{sandbox._ids.run}_0001"
    sandbox.clear()
    assert sandbox.outbox == []
    await sandbox.close()


async def test_sandbox_unknown_content_type_falls_back_to_octet_stream(tmp_path):
    sandbox = SandboxEmail(tmp_path)
    await sandbox.send(
        to=TO,
        subject="x",
        text="t",
        html="",
        attachments=(Attachment("blob", "weird", b"\x00\x01"),),
    )
    [path] = tmp_path.glob("*.eml")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    [att] = list(msg.iter_attachments())
    assert att.get_content_type() == "application/octet-stream"
    assert att.get_payload(decode=True) == b"\x00\x01"
