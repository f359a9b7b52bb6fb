"""Issue 12, finding 3: a contact changes only with a code sent to the new contact, and the old
contacts are told. Until the code is entered nothing changes: look-up codes, texts and receipts
keep going to the contacts on file."""

from __future__ import annotations

import asyncio
import re

from sqlalchemy import select, update

from bot import appkeys
from bot.ledger.models import Account, Conversation
from tests.seed import add_account
from tests.test_portal import Browser, link_for

NEW_PHONE = "+15555550177"
NEW_EMAIL = "maria.new@example.com"


ON_FILE = ("maria@example.com", "+15555550100")


async def contacts(app) -> tuple[str | None, str | None]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        account = await session.scalar(select(Account))
    return account.email, account.phone


async def knowledge_only_account(app) -> None:  # type: ignore[no-untyped-def]
    """An account with no contact on file: SSN last 4 + date of birth is how it is looked up."""
    await add_account(app, ssn="123-45-6789", dob="1985-04-12")
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None, phone=None))
        await session.commit()


def code_in(text: str) -> str:
    match = re.search(r"\b(\d{6})\b", text)
    assert match, text
    return match.group(1)


async def test_a_new_phone_and_email_on_the_web_take_effect_only_with_their_codes(
    app, client, phone, providers
):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    texts_before, emails_before = len(providers.sms.outbox), len(providers.email.outbox)
    await browser.step(action="continue", email=NEW_EMAIL, phone="(555) 555-0177")

    # A code page: each new contact got its own code; nothing changed yet.
    assert browser.state == "contact_review"
    assert "m***@example.com" in browser.text and "***-***-0177" in browser.text
    assert 'name="email_code"' in browser.html and 'name="phone_code"' in browser.html
    (code_sms,) = providers.sms.outbox[texts_before:]
    (code_email,) = providers.email.outbox[emails_before:]
    assert code_sms.to == NEW_PHONE and code_email.to == NEW_EMAIL
    assert await contacts(app) == ON_FILE


    # Codes swapped between the two contacts prove nothing.
    email_code = code_in(providers.email.outbox[-1].text)
    phone_code = code_in(providers.sms.outbox[-1].body)
    await browser.post(
        "/portal/pay", {"email_code": phone_code, "phone_code": email_code}, status=422
    )
    assert "did not match" in browser.text
    assert await contacts(app) == ON_FILE

    texts_before, emails_before = len(providers.sms.outbox), len(providers.email.outbox)
    await browser.post("/portal/pay", {"email_code": email_code, "phone_code": phone_code})
    assert browser.state == "amount"
    assert await contacts(app) == (NEW_EMAIL, NEW_PHONE)
    # The old contacts are told, with masked values only.
    (notice_sms,) = providers.sms.outbox[texts_before:]
    (notice_email,) = providers.email.outbox[emails_before:]
    assert notice_sms.to == "+15555550100"
    assert "***-***-0177" in notice_sms.body and NEW_PHONE not in notice_sms.body
    assert notice_email.to == "maria@example.com"
    assert "m***@example.com" in notice_email.text and NEW_EMAIL not in notice_email.text
    # Texts from the new number continue the same flow.
    assert (await phone(NEW_PHONE).send("50"))[0].startswith("Pay with Visa ending 4242?")


async def test_while_a_new_phone_waits_for_its_code_look_ups_text_the_number_on_file(
    app, client, phone, providers
):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", phone="(555) 555-0177")
    assert providers.sms.outbox[-1].to == NEW_PHONE
    client.session.cookie_jar.clear()
    other = Browser(client)
    await other.get("/portal/")
    await other.post("/portal/lookup", {"identifier": "ACC-1001"})
    assert providers.sms.outbox[-1].to == "+15555550100"
    assert "code is" in providers.sms.outbox[-1].body


async def test_without_the_code_the_flow_goes_on_with_the_contacts_on_file(
    app, client, phone, providers
):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", phone="(555) 555-0177")
    assert browser.state == "contact_review" and 'name="phone_code"' in browser.html
    await browser.step(action="keep")
    assert browser.state == "amount"
    assert await contacts(app) == ON_FILE
    async with app[appkeys.DATABASE].session() as session:
        numbers = list(await session.scalars(select(Conversation.phone)))
    assert NEW_PHONE not in numbers


async def test_three_wrong_codes_drop_the_change(app, client, phone, providers):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    await browser.step(action="continue", email=NEW_EMAIL)
    code = code_in(providers.email.outbox[-1].text)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        await browser.post("/portal/pay", {"email_code": wrong}, status=422)
    assert 'name="email_code"' not in browser.html
    await browser.post("/portal/pay", {"email_code": code}, status=422)
    assert await contacts(app) == ON_FILE


async def test_a_new_email_by_text_takes_effect_only_with_the_code_sent_to_it(
    app, client, phone, providers
):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    (reply,) = await maria.send(NEW_EMAIL)
    assert "m***@example.com" in reply and "code" in reply.lower()
    code_email = providers.email.outbox[-1]
    assert code_email.to == NEW_EMAIL
    assert await contacts(app) == ON_FILE

    (wrong,) = await maria.send("000000" if code_in(code_email.text) != "000000" else "111111")
    assert "did not match" in wrong
    assert await contacts(app) == ON_FILE

    emails_before = len(providers.email.outbox)
    replies = await maria.send(code_in(code_email.text))
    assert "receipts will go to m***@example.com" in replies[0]
    assert "How much would you like to pay?" in replies[-1]
    assert await contacts(app) == (NEW_EMAIL, "+15555550100")
    (notice,) = providers.email.outbox[emails_before:]
    assert notice.to == "maria@example.com" and NEW_EMAIL not in notice.text


async def test_ok_at_the_code_prompt_keeps_the_email_on_file(app, client, phone, providers):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    await maria.send(NEW_EMAIL)
    (reply,) = await maria.send("ok")
    assert "How much would you like to pay?" in reply
    assert await contacts(app) == ON_FILE


async def test_a_knowledge_verified_session_cannot_change_contacts_and_sends_no_code(
    app, client, providers
):
    await knowledge_only_account(app)
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": "ACC-1001"})
    await browser.post("/portal/verify", {"ssn_last4": "6789", "dob": "1985-04-12"})
    await browser.step(action="start")
    await browser.step(action="continue", email="attacker@example.com", phone="5555550188")
    assert "look up your account with a code" in browser.text
    assert providers.sms.outbox == [] and providers.email.outbox == []
    assert await contacts(app) == (None, None)


async def test_a_number_verified_by_knowledge_cannot_set_an_email_by_text(app, phone, providers):
    await knowledge_only_account(app)
    stranger = phone("+15555550142")
    await stranger.send("hi")
    await stranger.send("ACC-1001")
    assert "you are verified" in "\n".join(await stranger.send("6789 04/12/1985"))
    await stranger.send("pay")
    replies = await stranger.send("attacker@example.com")
    assert "look up your account with a code" in "\n".join(replies)
    assert providers.email.outbox == []
    assert await contacts(app) == (None, None)


async def test_codes_to_a_new_contact_count_against_the_caps_of_every_code(
    app, client, phone, providers
):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    for _ in range(6):
        await browser.step(action="continue", phone="(555) 555-0177")
    assert len([m for m in providers.sms.outbox if m.to == NEW_PHONE]) == 5
    assert "as many codes as we can for now" in browser.text
    assert 'name="phone_code"' in browser.html  # the fifth code still works
    assert await contacts(app) == ON_FILE


async def test_two_writers_capping_the_same_new_contact_send_no_more_than_the_cap(
    app, client, providers, clock
):
    """Two accounts (served by two processes sharing the ledger: `paybot serve` and
    `paybot chat`, each with a writer queue of its own) send a code to the same new number at
    once while it has had 4 this hour: one more goes, never two."""
    from bot.accounts.contact_change import CAPPED, SENT, send_code
    from bot.ledger.db import Database

    first = await add_account(app)
    second = await add_account(app, ref="ACC-1002", phone="+15555550101", email="z@example.com")
    engine = app[appkeys.ENGINE]
    database = app[appkeys.DATABASE]
    other_process = Database(database.url)
    now = clock.now()
    async def code_to_new_phone(db, account_id: int) -> str:  # type: ignore[no-untyped-def]
        async with db.writer(), db.session() as session:
            outcome = await send_code(
                session, engine.notifier, account_id=account_id, kind="phone", to=NEW_PHONE,
                code="123456", brand="Northwind Recovery", now=now,
            )
            await session.commit()
            return outcome

    try:
        for _ in range(4):
            assert await code_to_new_phone(database, first.id) == SENT
        await other_process.ping()  # connected: both start at once
        outcomes = await asyncio.gather(
            code_to_new_phone(database, first.id), code_to_new_phone(other_process, second.id)
        )
    finally:
        await other_process.close()
    assert sorted(outcomes) == [CAPPED, SENT]
    assert len([m for m in providers.sms.outbox if m.to == NEW_PHONE]) == 5
