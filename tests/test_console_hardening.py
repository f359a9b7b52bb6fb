"""What a probe of the staff console as an attacker, an agent and a supervisor found, held: each
test says what is expected and, under "Before:", what the probe saw before the fix."""

from __future__ import annotations

import pyotp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Creditor, Offer
from tests.console_support import Console, add_staff, code_at
from tests.seed import add_account
from tests.test_console_inbox import second_console, waiting_customer

SAVED_FORM = {
    "name": "Northwind Recovery", "disclosure": "This is a communication from a debt collector.",
    "contact_review": "true", "virtual_collection": "true", "allow_skip_offer": "true",
    "schedule_payment": "true", "sms_plan_signing": "true", "action": "save",
}


@pytest.fixture
async def supervisor(app, client, clock) -> Console:  # type: ignore[no-untyped-def]
    secret = pyotp.random_base32()
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    console = Console(client)
    response = await console.sign_in("sam@paybot.test", code=code_at(secret, clock.now()))
    assert response.status == 303
    return console


@pytest.mark.parametrize("key, value", [
    # Expected: refused (422, named next to its field, nothing stored). Before: saved (303); then
    # every SMS conversation of the creditor that reaches the payment date step answers "Sorry,
    # something went wrong" (OverflowError in states/payment.py horizon()), and the creditor's
    # own console page is a 500 (its preview overflows), so the supervisor cannot undo it there.
    ("furthest_schedule_days", "999999999"),
    # Expected: refused. Before: saved; the worker's reminder scheduling
    # (bot/outreach/scheduling.py reminder_due) raises OverflowError for any offer sent.
    ("reminder_days_before", "99999999999999999999"),
    ("reminder_days_before", "1000000"),
])
async def test_a_creditor_setting_out_of_any_date_range_is_refused_by_name(
    app, client, supervisor, key, value
):
    await add_account(app)
    response = await supervisor.post("/agent/supervisor/creditors/northwind",
                                     {**SAVED_FORM, key: value})
    assert response.status == 422, "saved a value that overflows every date computed from it"
    assert key in await response.text()
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        assert creditor is not None and key not in (creditor.settings or {})
    # And whatever is stored, the creditor's page is never a 500.
    assert (await supervisor.get("/agent/supervisor/creditors/northwind")).status == 200


async def test_an_agent_cannot_make_an_offer_on_a_conversation_another_agent_owns(
    app, client, phone, aiohttp_client
):
    # Expected (issue 14 "Claim: one owner at a time"; claim, reply, link, hand back and wrong
    # number already answer 409): Ben's offer on Ana's conversation is refused with 409 "Ana owns
    # this conversation" and no offer is made. Before: 303 done=offer, an Offer row created by
    # agent:Ben (and sent to the customer when send_via is set).
    await waiting_customer(app, phone)
    await add_staff(app)
    await add_staff(app, "ben@paybot.test", "Ben")
    ana, ben = Console(client), await second_console(aiohttp_client, client)
    await ana.sign_in()
    await ben.sign_in("ben@paybot.test")
    assert (await ana.post("/agent/c/15555550100/claim")).status == 303

    response = await ben.post("/agent/c/15555550100/offer",
                              {"kind": "settlement", "amount": "800.00", "send_via": ""})
    assert response.status == 409
    assert "Ana owns this conversation" in await response.text()
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(Offer))) == []


@pytest.mark.parametrize("what", ["note", "search", "creditor_name"])
async def test_a_nul_byte_from_staff_is_refused_never_a_500(
    app, client, phone, supervisor, what
):
    # Expected: a NUL (or other control character) typed by staff is refused in words (422),
    # as `paybot import-accounts` already refuses it ("contains a control character"), and
    # never a 500. Before, on SQLite it is stored as is; on PostgreSQL
    # (PAYBOT_TEST_BACKEND=services) the INSERT/SELECT fails and the page is a 500.
    await waiting_customer(app, phone)
    if what == "note":
        response = await supervisor.post("/agent/c/15555550100/note", {"body": "a\x00b"})
    elif what == "search":
        response = await supervisor.get("/agent/inbox/search?q=a%00b")
        assert response.status != 500
        return
    else:
        response = await supervisor.post("/agent/supervisor/creditors/northwind",
                                         {**SAVED_FORM, "name": "North\x00wind"})
    assert response.status == 422
    assert "has a control character" in await response.text()


async def test_the_payments_csv_neutralizes_a_formula_in_the_creditor_column(
    app, client, phone, supervisor
):
    # Expected: every text cell of the export that an import can fill is kept as text in a
    # spreadsheet (as the account and customer cells already are: a leading '). Before, the
    # creditor cell is written as is: `paybot import-accounts` accepts a creditor "=1+1" (it
    # creates that creditor), and the CSV carries =1+1, which Excel/LibreOffice evaluate.
    from tests.seed import CONFIRM_STEPS

    account = await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        session.add(Creditor(code="=1+1", name="Evil", disclosure="debt collector"))
        stored = await session.get(type(account), account.id)
        assert stored is not None
        stored.creditor_code = "=1+1"
        await session.commit()
    maria = phone()
    for text in [*CONFIRM_STEPS, "agree"]:
        await maria.send(text)
    response = await supervisor.get("/agent/supervisor/payments.csv")
    assert response.status == 200
    lines = (await response.text()).splitlines()
    assert len(lines) == 2, lines
    assert ",=1+1," not in lines[1] and ",'=1+1," in lines[1]


@pytest.mark.parametrize("body", ["\x00", "hi\x00there", "\x07\x1b"])
async def test_an_agent_reply_with_control_characters_is_refused_and_nothing_is_sent(
    app, client, phone, body
):
    # Expected: 422 in words and nothing sent, as POST /api/v1/conversations/{phone}/messages
    # already answers for the same body ("body must be text of 1 to 306 characters"). Before, the
    # console sends it: 303 done=sent and an SMS whose body is "\u0000" reaches the provider
    # (on PostgreSQL the ledger row then cannot be written: a 500).
    await waiting_customer(app, phone)
    await add_staff(app)
    ana = Console(client)
    await ana.sign_in()
    sms = app[appkeys.PROVIDERS].sms
    sms.clear()
    response = await ana.post("/agent/c/15555550100/reply", {"body": body})
    assert response.status == 422
    assert sms.outbox == []


async def test_a_huge_page_number_in_the_payments_list_is_said_never_a_500(
    app, client, supervisor
):
    # Expected: 200 (an empty page) or 422 "page: ...", as page=-1 and page=abc already are.
    # Before: 500 (the OFFSET overflows the database's 64-bit integer).
    await add_account(app)
    response = await supervisor.get("/agent/supervisor/payments?page=99999999999999999999")
    assert response.status in (200, 422)
