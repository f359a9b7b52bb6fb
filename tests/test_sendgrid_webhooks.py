"""SendGrid's Event Webhook: signed batches record email opt-outs, once, and campaigns honour them.

Each batch is signed the way SendGrid signs it: ECDSA P-256 with SHA-256 over the timestamp header
followed by the raw body, base64 DER in the signature header, with a key pair made here; the app
knows only the public half (base64 DER, as SendGrid's settings page shows it).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from bot import appkeys
from bot.app import create_app
from bot.config.settings import Settings
from bot.ledger.models import AuditEvent, EmailOptOut, ProcessedEvent
from bot.outreach.campaigns import send_links
from tests.conftest import PUBLIC_BASE_URL
from tests.seed import add_account
from webhooks import sendgrid as sendgrid_webhooks

PATH = "/webhooks/sendgrid"
SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
ROOT = Path(__file__).resolve().parents[1]

PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_DER = PRIVATE_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
PUBLIC_KEY = base64.b64encode(PUBLIC_DER).decode("ascii")  # what SendGrid's settings show
_ids = itertools.count(1)


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """The app of every test here knows the verification key."""
    return settings.replace(sendgrid_webhook_public_key=PUBLIC_KEY)


# --------------------------------------------------------------------------- helpers


def sign(payload: str, timestamp: str, key: ec.EllipticCurvePrivateKey = PRIVATE_KEY) -> str:
    """SendGrid's scheme: ECDSA P-256 / SHA-256 over timestamp + payload, base64 DER."""
    signature = key.sign((timestamp + payload).encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def event(kind: str, address: str = "maria@example.com", **fields: Any) -> dict[str, Any]:
    """One event as SendGrid posts it."""
    number = next(_ids)
    data: dict[str, Any] = {
        "email": address,
        "timestamp": int(datetime(2026, 11, 25, 14, 59, tzinfo=UTC).timestamp()),
        "event": kind,
        "sg_event_id": f"sg_event_{number:06d}",
        "sg_message_id": f"msg{number}.filter0001.16648.5515E0B88.0",
        "smtp-id": f"<msg{number}@paybot.example>",
        "category": ["campaign"],
    }
    data.update(fields)
    return data


def now_stamp(app: web.Application, shift: int = 0) -> str:
    return str(int(app[appkeys.CLOCK].now().timestamp()) + shift)


async def post(
    client: TestClient,
    batch: Any,
    *,
    timestamp: str | None = None,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    """Post a batch (a list, or the raw text) signed as SendGrid would, unless told otherwise."""
    payload = batch if isinstance(batch, str) else json.dumps(batch)
    if headers is None:
        stamp = timestamp if timestamp is not None else now_stamp(client.app)  # type: ignore[arg-type]
        headers = {TIMESTAMP: stamp, SIGNATURE: signature or sign(payload, stamp)}
    headers = {"Content-Type": "application/json", **headers}
    response = await client.post(PATH, data=payload.encode("utf-8"), headers=headers)
    return response.status, await response.text()


async def opt_outs(app: web.Application) -> dict[str, tuple[bool, str]]:
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(select(EmailOptOut))
        return {row.address: (row.opted_out, row.reason) for row in rows}


async def processed(app: web.Application) -> list[tuple[str, str, str]]:
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.execute(
            select(
                ProcessedEvent.source, ProcessedEvent.event_id, ProcessedEvent.event_type
            ).order_by(ProcessedEvent.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def audit_kinds(app: web.Application) -> list[str]:
    async with app[appkeys.DATABASE].session() as session:
        return list(
            await session.scalars(
                select(AuditEvent.kind)
                .where(AuditEvent.kind.in_(["email_opt_out", "email_opt_in"]))
                .order_by(AuditEvent.id)
            )
        )


async def campaign(app: web.Application):  # type: ignore[no-untyped-def]
    """`send-links --via email` as the CLI runs it: no opt-out check passed in."""
    providers = app[appkeys.PROVIDERS]
    return await send_links(
        settings=app[appkeys.SETTINGS],
        database=app[appkeys.DATABASE],
        sms=providers.sms,
        email=providers.email,
        clock=app[appkeys.CLOCK],
        via="email",
    )


# --------------------------------------------------------------------------- opt-outs


async def test_an_unsubscribe_is_recorded_once_with_its_event_id(app, client):
    unsubscribe = event("unsubscribe", "Maria@Example.com")

    status, text = await post(client, [unsubscribe])

    assert (status, text) == (200, "ok")
    assert await opt_outs(app) == {"maria@example.com": (True, "unsubscribe")}
    assert await processed(app) == [("sendgrid", unsubscribe["sg_event_id"], "unsubscribe")]
    assert await audit_kinds(app) == ["email_opt_out"]
    async with app[appkeys.DATABASE].session() as session:
        row = await session.get(EmailOptOut, "maria@example.com")
    assert row is not None and row.updated_at == datetime(2026, 11, 25, 14, 59, tzinfo=UTC)


async def test_the_same_sg_event_id_again_changes_nothing(app, client):
    leave = event("group_unsubscribe", asm_group_id=7)
    rejoin = event("group_resubscribe", asm_group_id=7, timestamp=leave["timestamp"] + 60)
    assert (await post(client, [leave]))[0] == 200
    assert (await post(client, [rejoin]))[0] == 200
    assert await opt_outs(app) == {"maria@example.com": (False, "group_resubscribe")}

    # SendGrid retries the first batch (our answer was lost): it must not opt her out again.
    assert await post(client, [leave]) == (200, "ok")
    # ... nor does the same id twice in one batch count twice.
    twice = event("spamreport", "bo@example.com")
    assert (await post(client, [twice, dict(twice)]))[0] == 200

    assert await opt_outs(app) == {
        "maria@example.com": (False, "group_resubscribe"),
        "bo@example.com": (True, "spamreport"),
    }
    assert [e for _, e, _ in await processed(app)] == [
        leave["sg_event_id"],
        rejoin["sg_event_id"],
        twice["sg_event_id"],
    ]
    assert await audit_kinds(app) == ["email_opt_out", "email_opt_in", "email_opt_out"]


async def test_the_same_batch_delivered_twice_at_once_counts_once(app, client):
    batch = [event("unsubscribe"), event("spamreport", "bo@example.com")]

    results = await asyncio.gather(post(client, batch), post(client, batch))

    assert [status for status, _ in results] == [200, 200]
    assert len(await processed(app)) == 2
    assert await audit_kinds(app) == ["email_opt_out", "email_opt_out"]


async def test_spam_reports_and_bounces_opt_out_a_blocked_message_does_not(app, client):
    batch = [
        event("spamreport", "spam@example.com"),
        event(
            "bounce",
            "gone@example.com",
            type="bounce",
            status="5.1.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist",
        ),
        event(
            "bounce",
            "busy@example.com",
            type="blocked",
            status="4.0.0",
            reason="421 try again later",
        ),
        event("dropped", "unsub@example.com", reason="Unsubscribed Address"),
        event("dropped", "bounced@example.com", reason="Bounced Address"),
        event("dropped", "complained@example.com", reason="Spam Reporting Address"),
        event("dropped", "invalid@example.com", reason="Invalid SMTPAPI header"),
    ]

    assert await post(client, batch) == (200, "ok")

    assert await opt_outs(app) == {
        "spam@example.com": (True, "spamreport"),
        "gone@example.com": (True, "bounce"),
        "unsub@example.com": (True, "dropped (unsubscribed)"),
        "bounced@example.com": (True, "dropped (bounced)"),
        "complained@example.com": (True, "dropped (spam report)"),
    }
    assert [t for _, _, t in await processed(app)] == ["spamreport", "bounce"] + ["dropped"] * 3


async def test_a_group_resubscribe_lifts_a_group_unsubscribe_only(app, client):
    at = event("x")["timestamp"]
    await post(
        client,
        [
            event("group_unsubscribe", "group@example.com", timestamp=at),
            event("unsubscribe", "global@example.com", timestamp=at),
            event("spamreport", "spam@example.com", timestamp=at),
            event("bounce", "gone@example.com", type="bounce", timestamp=at),
        ],
    )
    assert (
        await post(
            client,
            [
                event("group_resubscribe", address, timestamp=at + 30)
                for address in (
                    "group@example.com",
                    "global@example.com",
                    "spam@example.com",
                    "gone@example.com",
                    "never@example.com",
                )
            ],
        )
    )[0] == 200

    assert await opt_outs(app) == {
        "group@example.com": (False, "group_resubscribe"),
        "global@example.com": (True, "unsubscribe"),
        "spam@example.com": (True, "spamreport"),
        "gone@example.com": (True, "bounce"),
    }


async def test_an_older_resubscribe_arriving_late_does_not_undo_a_newer_unsubscribe(app, client):
    at = event("x")["timestamp"]
    await post(client, [event("group_unsubscribe", timestamp=at)])
    await post(client, [event("group_resubscribe", timestamp=at - 120)])  # batches out of order
    assert await opt_outs(app) == {"maria@example.com": (True, "group_unsubscribe")}

    # A bounce after a group unsubscribe is the stronger reason: a resubscribe keeps it.
    await post(client, [event("bounce", type="bounce", timestamp=at + 10)])
    await post(client, [event("group_resubscribe", timestamp=at + 20)])
    assert await opt_outs(app) == {"maria@example.com": (True, "bounce")}


async def test_a_mixed_batch_records_what_matters_and_acknowledges_the_rest(app, client):
    unsubscribe = event("unsubscribe", "stop@example.com")
    spam = event("spamreport", "spam@example.com")
    batch = [
        event("processed", "stop@example.com"),
        event("delivered", "stop@example.com", response="250 OK"),
        event("open", "stop@example.com", useragent="Mozilla/5.0", ip="203.0.113.9"),
        event("click", "stop@example.com", url="https://paybot.test/p/abc"),
        unsubscribe,
        event("deferred", "later@example.com", attempt="1"),
        event("bounce", "busy@example.com", type="blocked"),
        event("something_new", "new@example.com"),
        "not an event",
        {"event": "unsubscribe", "sg_event_id": "sg_no_address"},
        event("unsubscribe", "not-an-address"),
        spam,
    ]
    big = [event("open", f"reader{n}@example.com", useragent="x" * 200) for n in range(300)]

    status, text = await post(client, batch + big)  # ~130 KB: over the app's 64 KiB form limit

    assert (status, text) == (200, "ok")
    assert await opt_outs(app) == {
        "stop@example.com": (True, "unsubscribe"),
        "spam@example.com": (True, "spamreport"),
    }
    # Only events with an effect keep their id: opens and clicks are the bulk of the traffic.
    assert await processed(app) == [
        ("sendgrid", unsubscribe["sg_event_id"], "unsubscribe"),
        ("sendgrid", spam["sg_event_id"], "spamreport"),
    ]


async def test_an_opt_out_without_an_event_id_still_counts(app, client):
    anonymous = event("unsubscribe")
    del anonymous["sg_event_id"]
    rejoin = event("group_resubscribe")
    del rejoin["sg_event_id"]

    assert (await post(client, [anonymous]))[0] == 200
    assert (await post(client, [rejoin]))[0] == 200  # an unidentifiable opt-in is not trusted

    assert await opt_outs(app) == {"maria@example.com": (True, "unsubscribe")}
    assert await processed(app) == []


# --------------------------------------------------------------------------- refusals


async def test_a_wrong_or_missing_signature_is_refused_with_403_and_changes_nothing(app, client):
    batch = [event("unsubscribe")]
    payload = json.dumps(batch)
    stamp = now_stamp(app)
    other_key = ec.generate_private_key(ec.SECP256R1())

    attempts = [
        {TIMESTAMP: stamp, SIGNATURE: sign(payload, stamp, other_key)},  # someone else's key
        {TIMESTAMP: stamp, SIGNATURE: sign(payload + " ", stamp)},  # signed another body
        {TIMESTAMP: now_stamp(app, -1), SIGNATURE: sign(payload, stamp)},  # another timestamp
        {TIMESTAMP: stamp, SIGNATURE: "not base64 at all!"},
        {TIMESTAMP: stamp, SIGNATURE: base64.b64encode(b"not DER").decode()},
        {TIMESTAMP: "soon", SIGNATURE: sign(payload, "soon")},
        {TIMESTAMP: stamp},
        {SIGNATURE: sign(payload, stamp)},
        {},
    ]
    for headers in attempts:
        status, _ = await post(client, payload, headers=headers)
        assert status == 403, headers

    assert await opt_outs(app) == {}
    assert await processed(app) == []


async def test_a_stale_or_future_timestamp_is_refused(app, client):
    batch = [event("unsubscribe")]

    assert await post(client, batch, timestamp=now_stamp(app, -301)) == (403, "stale timestamp")
    assert await post(client, batch, timestamp=now_stamp(app, +301)) == (403, "stale timestamp")
    assert await opt_outs(app) == {}

    assert (await post(client, batch, timestamp=now_stamp(app, -299)))[0] == 200
    assert await opt_outs(app) == {"maria@example.com": (True, "unsubscribe")}


async def test_a_signed_body_that_is_not_a_json_array_is_refused_with_400(app, client):
    for body in ("not json", '{"event": "unsubscribe", "email": "maria@example.com"}', "null"):
        assert (await post(client, body))[0] == 400, body
    stamp = now_stamp(app)
    response = await client.post(  # not UTF-8
        PATH,
        data=b'[{"event": "unsubscribe", "email": "\xff@example.com"}]',
        headers={TIMESTAMP: stamp, SIGNATURE: sign("x", stamp)},
    )
    assert response.status == 400
    assert await opt_outs(app) == {} and await processed(app) == []


async def test_without_a_usable_key_nothing_is_accepted(settings, providers, clock, aiohttp_client):
    for key in (None, "not a key", base64.b64encode(b"junk").decode()):
        other = await aiohttp_client(
            create_app(settings.replace(sendgrid_webhook_public_key=key), providers, clock)
        )
        status, text = await post(other, [event("unsubscribe")])
        assert (status, text) == (400, "webhook public key not configured"), key
        assert await opt_outs(other.app) == {} and await processed(other.app) == []


async def test_a_pem_armoured_key_works_too(settings, providers, clock, aiohttp_client):
    pem = PRIVATE_KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for n, key in enumerate((pem.decode(), pem.decode().replace("\n", "\\n"), f"  {PUBLIC_KEY}\n")):
        other = await aiohttp_client(
            create_app(settings.replace(sendgrid_webhook_public_key=key), providers, clock)
        )
        assert (await post(other, [event("unsubscribe", f"m{n}@example.com")]))[0] == 200, key
    assert set(await opt_outs(other.app)) == {f"m{n}@example.com" for n in range(3)}


def test_the_key_is_read_from_the_environment():
    settings = Settings.from_env({"SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC_KEY})
    assert settings.sendgrid_webhook_public_key == PUBLIC_KEY
    assert Settings.from_env({}).sendgrid_webhook_public_key is None
    assert sendgrid_webhooks.load_public_key(PUBLIC_KEY) is not None
    rsa_like = base64.b64encode(b"0\x82\x01\x22").decode()
    assert sendgrid_webhooks.load_public_key(rsa_like) is None


async def test_a_database_failure_answers_503_and_keeps_nothing(app, client, monkeypatch):
    batch = [event("spamreport", "spam@example.com"), event("unsubscribe")]

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("UPDATE email_opt_outs", {}, ConnectionError("database went away"))

    monkeypatch.setattr(sendgrid_webhooks.ledger, "set_email_opt_out", broken)
    assert (await post(client, batch))[0] == 503
    assert await opt_outs(app) == {} and await processed(app) == []

    monkeypatch.undo()  # SendGrid's retry does it all
    assert (await post(client, batch))[0] == 200
    assert await opt_outs(app) == {
        "spam@example.com": (True, "spamreport"),
        "maria@example.com": (True, "unsubscribe"),
    }


# --------------------------------------------------------------------------- campaigns


async def test_a_campaign_afterwards_skips_the_address_and_counts_it(app, client, providers):
    await add_account(app, ref="A-1", email="Maria@Example.com", phone=None, methods=())
    await add_account(app, ref="A-2", email="go@example.com", phone="+15555550111", methods=())
    leave = event("group_unsubscribe", "maria@example.com", asm_group_id=7)

    assert (await post(client, [leave]))[0] == 200
    report = await campaign(app)

    assert report.summary == "email: 1 sent, 1 skipped (opted out), 0 failed"
    assert [m.to for m in providers.email.outbox] == ["go@example.com"]

    # She rejoins the group: once the first links have expired, the next campaign reaches her.
    rejoin = event(
        "group_resubscribe", "maria@example.com", asm_group_id=7, timestamp=leave["timestamp"] + 60
    )
    assert (await post(client, [rejoin]))[0] == 200
    app[appkeys.CLOCK].advance(timedelta(hours=73))
    report = await campaign(app)
    assert report.summary == "email: 2 sent, 0 failed"
    assert [m.to for m in providers.email.outbox][1:] == ["maria@example.com", "go@example.com"]


async def test_the_send_links_command_honours_email_opt_outs(app, client, database_url, tmp_path):
    """`paybot send-links --via email`, run as an operator runs it, on the real clock."""
    zone = _afternoon_zone()
    await add_account(
        app, ref="C-1", email="stop@example.com", phone=None, methods=(), timezone=zone
    )
    await add_account(app, ref="C-2", email="go@example.com", phone=None, methods=(), timezone=zone)
    assert (await post(client, [event("spamreport", "STOP@example.com")]))[0] == 200

    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_"))
    }
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY="test-secret-key",
        PAYBOT_DATA_DIR=str(tmp_path / "var"),
        # Not production (http): the sandbox outbox stands in for SendGrid; https would refuse.
        PUBLIC_BASE_URL=PUBLIC_BASE_URL.replace("https://", "http://"),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "send-links",
        "--via",
        "email",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == "email: 1 sent, 1 skipped (opted out), 0 failed"
    files = sorted((tmp_path / "var" / "outbox" / "email").glob("*.eml"))
    assert len(files) == 1 and b"To: go@example.com" in files[0].read_bytes()


def _afternoon_zone() -> str:
    """A zone where it is mid-afternoon now (the command runs on the real clock)."""
    hour = datetime.now(UTC).hour
    offset = (14 - hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"  # Etc/ signs are inverted


async def test_opt_outs_are_per_address_whatever_the_case(app, client):
    await post(client, [event("unsubscribe", " MARIA@example.COM ")])
    async with app[appkeys.DATABASE].session() as session:
        count = await session.scalar(select(func.count()).select_from(EmailOptOut))
    assert count == 1
    assert await opt_outs(app) == {"maria@example.com": (True, "unsubscribe")}


# --------------------------------------------------------------------------- other email paths


async def test_the_notifier_holds_back_non_transactional_email_to_an_opted_out_address(
    app, client, providers, caplog
):
    from bot.outreach.notifications import Notifier, ledger_email_opt_outs
    from bot.payments.service import PaymentOutcome

    maria = await add_account(app, methods=())
    assert (await post(client, [event("unsubscribe", "maria@example.com")]))[0] == 200
    notifier = Notifier(
        sms=providers.sms,
        email=providers.email,
        brand="Northwind Recovery",
        email_opted_out=ledger_email_opt_outs(app[appkeys.DATABASE]),
    )
    message = {"to": "maria@example.com", "subject": "Reminder", "text": "t", "html": "<p>h</p>"}

    with caplog.at_level("INFO", logger="bot.outreach.notifications"):
        await notifier.send_email(**message)  # a reminder: not sent
    assert providers.email.outbox == []
    assert "opted out" in caplog.text and "maria@example.com" not in caplog.text

    outcome = PaymentOutcome(
        reference="P-TEST1",
        status="paid",
        amount_cents=5000,
        method_label="Visa ending 4242",
        pay_on=None,
    )
    await notifier.send_email(**notifier.receipt(maria, outcome, brand="Northwind Recovery",
                                                      at=datetime(2026, 11, 25, 15, tzinfo=UTC)))
    await notifier.send_code(maria, "123456", brand="Northwind Recovery", by_sms=False)
    assert [m.subject for m in providers.email.outbox] == [
        "Your payment receipt P-TEST1",
        "Northwind Recovery: your verification code",
    ]

    async def unreadable(address: str) -> bool:
        raise ConnectionError("database went away")

    notifier.email_opted_out = unreadable
    await notifier.send_email(**{**message, "to": "go@example.com"})
    assert len(providers.email.outbox) == 2  # held back while consent cannot be read
    notifier.email_opted_out = None
    await notifier.send_email(**{**message, "to": "go@example.com"})
    assert len(providers.email.outbox) == 3  # no lookup wired: as before
