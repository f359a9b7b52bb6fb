"""The Twilio webhook contract: signatures, refusals, TwiML, and nothing changed by bad requests."""

from __future__ import annotations

from sqlalchemy import func, select

from bot import appkeys
from bot.ledger.models import Message
from states.diagram import document, readme_section
from tests.conftest import signed_post
from tests.seed import add_account


async def stored_messages(app) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)))


async def test_forged_signature_is_refused_and_changes_nothing(app, phone):
    await add_account(app)
    status, _ = await phone().post("pay", token="not-the-real-token")
    assert status == 403
    assert await stored_messages(app) == 0


async def test_missing_signature_is_refused(app, client):
    response = await client.post(
        "/webhooks/twilio/sms", data={"From": "+15555550100", "Body": "pay", "MessageSid": "SM1"}
    )
    assert response.status == 403
    assert await stored_messages(app) == 0


async def test_signature_covers_the_query_string(app, client):
    await add_account(app)
    params = {"MessageSid": "SMq1", "From": "+15555550100", "Body": "hi"}
    from twilio.request_validator import RequestValidator

    from tests.conftest import AUTH_TOKEN, PUBLIC_BASE_URL

    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        PUBLIC_BASE_URL + "/webhooks/twilio/sms?campaign=7", params
    )
    ok = await client.post(
        "/webhooks/twilio/sms?campaign=7", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert ok.status == 200
    tampered = await client.post(
        "/webhooks/twilio/sms?campaign=8", data=params, headers={"X-Twilio-Signature": signature}
    )
    assert tampered.status == 403


async def test_reply_is_twiml(app, client):
    await add_account(app)
    response = await signed_post(
        client,
        "/webhooks/twilio/sms",
        {"MessageSid": "SMx1", "From": "+15555550100", "Body": "help"},
    )
    assert response.status == 200
    assert response.content_type == "application/xml"
    body = await response.text()
    assert body.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>')


async def test_missing_fields_get_a_clear_400(client):
    response = await signed_post(client, "/webhooks/twilio/sms", {"Body": "pay"})
    assert response.status == 400
    assert "MessageSid and From are required" in await response.text()


async def test_odd_bodies_get_a_helpful_reply(app, phone):
    odd = [
        "",
        " ",
        "🙂🙂🙂",
        "中文字符",
        "Robert'); DROP TABLE accounts;--",
        "\x00\x01",
        "9" * 1600,
    ]
    for n, body in enumerate(odd):
        number = f"+1555555{n:04d}"
        await add_account(app, ref=f"ACC-{n}", phone=number)
        (reply,) = await phone(number).send(body)
        assert reply.startswith("Sorry, I did not understand that.\nYour balance on"), reply
    assert await stored_messages(app) == 2 * len(odd)


async def test_a_huge_request_is_refused_without_a_500(client):
    response = await client.post("/webhooks/twilio/sms", data={"Body": "x" * 200_000})
    assert response.status == 413


async def test_status_callback_records_delivery(app, client):
    async with app[appkeys.DATABASE].session() as session:
        from tests.conftest import START

        session.add(
            Message(
                direction="outbound",
                provider_sid="SMout1",
                phone="+15555550100",
                body="hello",
                status="queued",
                created_at=START,
            )
        )
        await session.commit()
    response = await signed_post(
        client, "/webhooks/twilio/status", {"MessageSid": "SMout1", "MessageStatus": "delivered"}
    )
    assert response.status == 204
    async with app[appkeys.DATABASE].session() as session:
        status = await session.scalar(
            select(Message.status).where(Message.provider_sid == "SMout1")
        )
    assert status == "delivered"


async def test_unknown_link_and_terms_pages(client):
    response = await client.get("/p/not-a-real-token")
    assert response.status == 404
    assert "text LINK" in (await response.text()).replace("<strong>", "").replace("</strong>", "")
    response = await client.get("/t/2026-11")
    assert response.status == 200
    assert "AGREE" in await response.text()


async def test_a_link_from_a_text_opens_and_expires(app, client, phone, clock):
    from datetime import timedelta

    await add_account(app)
    (menu,) = await phone().send("hi")
    path = menu.split("https://paybot.test", 1)[1].split()[0]
    response = await client.get(path)
    assert response.status == 200
    page = await response.text()
    assert "Hi Maria" in page and "$1,250.00" in page and "maria@example.com" not in page
    clock.advance(timedelta(hours=73))
    response = await client.get(path)
    assert response.status == 410
    assert "text LINK" in (await response.text()).replace("<strong>", "").replace("</strong>", "")


def test_the_flow_diagram_is_current() -> None:
    from pathlib import Path

    root = Path(__file__).parent.parent
    assert (root / "docs" / "flows.md").read_text() == document(), "run: make diagrams"
    assert readme_section() in (root / "README.md").read_text(), "run: make diagrams"
