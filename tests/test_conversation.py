"""The payment journey by text, through the signed Twilio webhook, on the ledger the API reports."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from bot import appkeys
from bot.inbox import handoffs
from bot.ledger.models import Agreement, AuditEvent, Conversation, Message, OptOut, Payment
from bot.text.gsm7 import is_gsm7, segment_count
from tests.conftest import API_KEY
from tests.seed import add_account


async def account_json(client, ref: str = "ACC-1001") -> dict:  # type: ignore[no-untyped-def]
    response = await client.get(
        f"/api/v1/accounts/{ref}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status == 200
    return await response.json()


async def count(app, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_the_example_conversation_pays_and_records(app, client, phone, providers):
    await add_account(app, offers=True)
    maria = phone()

    (menu,) = await maria.send("hi")
    assert "Your balance on Acme Card ending 4821 is $1,250.00" in menu
    assert "https://paybot.test/p/" in menu

    assert await maria.send("pay") == [
        "We have your email as m***@example.com. Reply OK, or send a new email."
    ]
    (offers,) = await maria.send("ok")
    assert offers.startswith("Offers for you:")
    assert "1) Pay $800.00 by Dec 31, 2026 and settle in full (save $450.00)" in offers
    assert "2) 6 monthly payments of $208.34" in offers
    assert "3) Skip." in offers and offers.endswith("Reply 1, 2 or 3.")

    assert await maria.send("3") == [
        "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
    ]
    (method,) = await maria.send("$50")
    assert method.startswith("Pay with Visa ending 4242? Reply 1 for Visa ending 4242, 2 to add")
    assert await maria.send("1") == [
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    ]
    assert await maria.send("now") == [
        "Confirm: $50.00 from Visa ending 4242 today. Reply YES to confirm or NO to change."
    ]
    (agreement,) = await maria.send("yes")
    assert agreement == (
        "Reply AGREE to authorize this payment under the terms at "
        "https://paybot.test/t/2026-11 (or NO to cancel)."
    )
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 paid with Visa ending 4242. Ref P-")
    assert done.endswith("Receipt sent to m***@example.com.")

    account = await account_json(client)
    assert account["balance_cents"] == 120000
    assert [(p["amount_cents"], p["status"], p["method"]) for p in account["payments"]] == [
        (5000, "Paid", "Visa ending 4242")
    ]
    assert await count(app, Agreement) == 1
    receipt = providers.email.outbox[-1]
    assert receipt.to == "maria@example.com" and "$50.00" in receipt.text
    assert len(providers.payments.charges) == 1


async def test_scheduled_payment_is_stored_not_charged(app, client, phone, providers):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "$50", "1"]:
        await maria.send(text)
    assert await maria.send("dec 15") == [
        "Confirm: $50.00 from Visa ending 4242 on Dec 15, 2026. "
        "Reply YES to confirm or NO to change."
    ]
    await maria.send("yes")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $50.00 scheduled for Dec 15, 2026. Ref P-")
    account = await account_json(client)
    assert account["balance_cents"] == 125000  # nothing moves until money arrives
    assert [(p["status"], p["scheduled_for"]) for p in account["payments"]] == [
        ("Scheduled", "2026-12-15")
    ]
    assert providers.payments.charges == []


async def test_settlement_offer_settles_the_balance(app, client, phone):
    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    (method,) = await maria.send("1")
    assert method.startswith("Pay with Visa ending 4242?")
    # No schedule step with a settlement offer.
    assert await maria.send("1") == [
        "Confirm: $800.00 from Visa ending 4242 today to settle your balance in full. "
        "Reply YES to confirm or NO to change."
    ]
    await maria.send("yes")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $800.00 paid")
    assert (await account_json(client))["balance_cents"] == 0


async def test_plan_offer_schedules_every_installment(app, client, phone):
    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok", "2", "1"]:
        await maria.send(text)
    (confirm,) = await maria.send("dec 1")
    assert confirm.startswith(
        "Confirm: 6 monthly payments of $208.34 from Visa ending 4242, the first on Dec 1, 2026."
    )
    await maria.send("yes")
    (done,) = await maria.send("agree")
    assert "scheduled for Dec 1, 2026, the first of 6 payments" in done
    payments = (await account_json(client))["payments"]
    assert [p["scheduled_for"] for p in payments] == [
        "2026-12-01",
        "2027-01-01",
        "2027-02-01",
        "2027-03-01",
        "2027-04-01",
        "2027-05-01",
    ]
    assert sum(p["amount_cents"] for p in payments) == 125000
    assert {p["status"] for p in payments} == {"Scheduled"}


async def test_settings_switch_steps_off(app, phone):
    await add_account(
        app,
        offers=True,
        creditor_settings={
            "contact_review": False,
            "virtual_collection": False,
            "schedule_payment": False,
        },
    )
    maria = phone()
    assert await maria.send("pay") == [
        "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
    ]
    await maria.send("full")
    (confirm,) = await maria.send("1")
    assert confirm.startswith("Confirm: $1,250.00 from Visa ending 4242 today.")


async def test_skip_is_refused_when_the_creditor_forbids_it(app, phone):
    await add_account(app, offers=True, creditor_settings={"allow_skip_offer": False})
    maria = phone()
    await maria.send("pay")
    (offers,) = await maria.send("ok")
    assert "Skip" not in offers and offers.endswith("Reply 1 or 2.")
    (again, prompt) = (await maria.send("3"))[0].split("\n", 1)
    assert again == "That is not one of the options."
    assert prompt.startswith("Offers for you:")


async def test_amount_limits_are_explained(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    assert await maria.send("$2000") == [
        "That is more than you owe. Reply an amount up to $1,250.00, or FULL."
    ]
    assert await maria.send("$5") == [
        "The smallest payment we can take is $25.00. Reply an amount of at least $25.00."
    ]
    (reply,) = await maria.send("50 or 60")
    assert reply.startswith("Please reply with just one amount.")


async def test_past_and_far_dates_are_refused_with_the_reason(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1"]:
        await maria.send(text)
    (reply,) = await maria.send("yesterday")
    assert reply.startswith("That date has already passed.")
    (reply,) = await maria.send("6/1/2027")
    assert reply.startswith("That date is too far ahead.")


async def test_declined_card_goes_back_to_the_method_step(app, client, phone, providers):
    await add_account(app, methods=("pm_card_chargeCustomerFail", "pm_card_visa"))
    maria = phone()
    for text in ["pay", "ok", "100"]:
        await maria.send(text)
    for text in ["1", "now", "yes"]:
        await maria.send(text)
    replies = await maria.send("agree")
    text = "\n".join(replies)
    assert "Sorry, $100.00 with Visa ending 0341 did not go through" in text
    assert "Nothing was charged." in text
    assert "Which payment method?" in text
    # Choosing the other card goes on with the same amount and date.
    (confirm,) = await maria.send("2")
    assert confirm.startswith("Pay now or later?")
    await maria.send("now")
    await maria.send("yes")
    (done,) = await maria.send("agree")
    assert done.startswith("Done: $100.00 paid with Visa ending 4242")
    statuses = [p["status"] for p in (await account_json(client))["payments"]]
    assert sorted(statuses) == ["Declined", "Paid"]
    assert (await account_json(client))["balance_cents"] == 115000


async def test_no_saved_method_hands_over_to_the_secure_link(app, phone):
    await add_account(app, methods=())
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    (reply,) = await maria.send("50")
    assert reply.startswith("To pay, add a card or bank account securely at https://paybot.test/p/")


async def test_keywords_work_in_any_state(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    (balance,) = await maria.send("balance")
    assert balance.startswith("Your balance on Acme Card ending 4821 is $1,250.00.")
    assert balance.endswith("Reply an amount from $25.00 to $1,250.00, or FULL.")
    (help_,) = await maria.send("HELP")
    assert "Msg & data rates may apply" in help_ and "STOP" in help_
    assert "support@paybot.example" in help_
    (link,) = await maria.send("link")
    assert link.startswith("Your secure link: https://paybot.test/p/")
    (menu,) = await maria.send("menu")
    assert menu.startswith("Your balance on Acme Card ending 4821 is $1,250.00. Reply PAY")


async def test_stop_is_confirmed_once_and_honoured(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    assert await maria.send("Stop. Thank you") == [
        "Northwind Recovery: You are unsubscribed and will get no more messages. "
        "Reply START to resubscribe."
    ]
    assert await maria.send("stop") == []
    assert await maria.send("pay") == []
    assert await maria.send("HELP") == []
    async with app[appkeys.DATABASE].session() as session:
        row = await session.get(OptOut, "+15555550100")
        assert row is not None and row.opted_out
    (back,) = await maria.send("START")
    assert back.startswith("Northwind Recovery: You are resubscribed.")
    (menu,) = await maria.send("hello")
    assert "Reply PAY" in menu


async def test_spanish_opt_out(app, phone):
    await add_account(app)
    (reply,) = await phone().send("no me manden mas mensajes")
    assert "unsubscribed" in reply


async def claim_for(app, agent: str, number: str = "+15555550100") -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == number))
        await handoffs.claim(session, conv, agent=agent, at=app[appkeys.CLOCK].now())
        await session.commit()


async def test_agent_takes_over_and_hands_back(app, client, phone):
    await add_account(app)
    maria = phone()
    (reply,) = await maria.send("can I talk to a real person")
    assert reply.startswith("Thanks. A member of our team will text you back")
    # No one has claimed it yet: PAY brings the bot back, the request stays in the queue.
    (pay,) = await maria.send("pay")
    assert pay.startswith("We have your email")
    await claim_for(app, "Dana")
    assert await maria.send("pay") == []  # the bot is quiet while a person has it
    assert await count(app, Message, Message.body == "pay") == 2  # but the message is stored
    response = await client.post(
        "/api/v1/conversations/+15555550100/handback",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status == 200
    (reply,) = await maria.send("pay")
    assert reply.startswith("We have your email")


async def test_menu_brings_the_bot_back_from_a_person(app, phone):
    """Handed to a person, the customer is never left in silence: MENU brings the bot back at
    once (the agents are told), and the bot answers again from the main menu."""
    await add_account(app)
    maria = phone()
    (reply,) = await maria.send("AGENT")
    assert reply == (
        "Thanks. A member of our team will text you back here within about 15 minutes. Reply "
        "MENU to use the automated assistant meanwhile, or STOP to opt out."
    )
    await claim_for(app, "Dana")
    assert await maria.send("hello?") == []  # a person has it: stored for them
    (menu,) = await maria.send("MENU")
    assert menu.startswith("Your balance on Acme Card ending 4821 is $1,250.00. Reply PAY"), menu
    (pay,) = await maria.send("pay")
    assert pay.startswith("We have your email")
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation))
        resumed = await session.scalar(select(AuditEvent).where(AuditEvent.kind == "handed_back"))
    assert conv.status == "bot" and resumed.actor == "customer"


async def test_menu_brings_the_bot_back_before_the_number_is_verified(app, phone):
    await add_account(app)
    stranger = phone("+15555550199")
    (reply,) = await stranger.send("AGENT")
    assert reply.startswith("Thanks. A member of our team will text you back")
    (again,) = await stranger.send("menu")
    assert "account ID" in again, again


async def test_complaints_go_to_a_person(app, phone):
    await add_account(app)
    (reply,) = await phone().send("I'm going to report you to the CFPB")
    assert reply.startswith("Thanks for telling us.")


async def test_repeated_confusion_goes_to_a_person(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok"]:
        await maria.send(text)
    (first,) = await maria.send("banana")
    assert first.startswith("Sorry, I did not understand that.")
    await maria.send("banana")
    (third,) = await maria.send("banana")
    assert third.startswith("Sorry, I am having trouble understanding.")
    (in_line,) = await maria.send("banana")  # once told where they stand, then stored only
    assert in_line.startswith("You are still in line for a member of our team")
    assert await maria.send("banana") == []


async def test_idle_conversation_starts_over_politely(app, phone, clock):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50"]:
        await maria.send(text)
    clock.advance(timedelta(hours=2))
    (reply,) = await maria.send("1")
    assert reply.startswith("Welcome back! Your earlier session timed out")
    assert "Reply PAY" in reply


async def test_duplicate_message_sid_is_answered_once_and_processed_once(app, phone, providers):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes"]:
        await maria.send(text)
    first = await maria.send("agree", sid="SM" + "a" * 32)
    again = await maria.send("agree", sid="SM" + "a" * 32)
    assert first == again
    assert len(providers.payments.charges) == 1
    assert await count(app, Payment) == 1
    assert await count(app, Message, Message.provider_sid == "SM" + "a" * 32) == 1


async def test_a_second_agree_does_not_charge_again(app, phone, providers):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "now", "yes", "agree"]:
        await maria.send(text)
    (reply,) = await maria.send("agree")
    assert "Reply PAY" in reply
    assert len(providers.payments.charges) == 1


async def test_replies_are_gsm7_and_at_most_two_segments(app, phone):
    await add_account(app, offers=True, methods=("pm_card_visa", "pm_card_mastercard"))
    maria = phone()
    replies = []
    for text in [
        "hi",
        "balance",
        "help",
        "pay",
        "maria.new@example.com",
        "3",
        "50",
        "1",
        "12/15",
        "yes",
        "agree",
        "link",
        "👍🏽 ñandú 中文",
        "' OR 1=1; --",
        "x" * 1500,
    ]:
        replies += await maria.send(text)
    assert replies
    for reply in replies:
        assert is_gsm7(reply), reply
        assert segment_count(reply) <= 2, reply


async def test_no_goes_back_one_step(app, phone):
    await add_account(app, offers=True)
    maria = phone()
    for text in ["pay", "ok", "3"]:
        await maria.send(text)
    (offers,) = await maria.send("no")
    assert offers.startswith("Offers for you:")
    (method,) = await maria.send("1")
    assert method.startswith("Pay with Visa ending 4242?")
    (offers_again,) = await maria.send("no")
    assert offers_again.startswith("Offers for you:")
    (contact,) = await maria.send("no")
    assert contact.startswith("We have your email as m***@example.com")


async def test_pay_after_a_timeout_starts_right_away(app, phone, clock):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50"]:
        await maria.send(text)
    clock.advance(timedelta(hours=2))
    (reply,) = await maria.send("pay")
    assert reply == (
        "Welcome back! Your earlier session timed out, so let us start again.\n"
        "We have your email as m***@example.com. Reply OK, or send a new email."
    )


async def test_bank_payment_is_pending_and_the_balance_waits(app, client, phone):
    await add_account(app, methods=("pm_usBankAccount",))
    maria = phone()
    for text in ["pay", "ok", "100", "1", "now", "yes"]:
        await maria.send(text)
    (reply,) = await maria.send("agree")
    assert reply.startswith("Thanks: $100.00 from Bank ending 6789 is pending")
    account = await account_json(client)
    assert account["balance_cents"] == 125000
    assert [p["status"] for p in account["payments"]] == ["Pending"]
    (balance,) = await maria.send("balance")
    assert balance == (
        "Your balance on Acme Card ending 4821 is $1,250.00. You owe $1,150.00 after your "
        "scheduled and pending payments."
    )


async def test_the_conversation_survives_losing_redis(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50"]:
        await maria.send(text)
    await app[appkeys.COORDINATOR].redis.flushdb()  # Redis restarted empty
    assert await maria.send("1") == [
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    ]


async def test_every_inbound_message_is_stored_with_its_reply(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    async with app[appkeys.DATABASE].session() as session:
        rows = (
            await session.execute(
                select(Message.direction, Message.body, Message.in_reply_to_id).order_by(Message.id)
            )
        ).all()
    assert [(d, b) for d, b, _ in rows] == [
        ("inbound", "pay"),
        ("outbound", "We have your email as m***@example.com. Reply OK, or send a new email."),
    ]
    assert rows[1][2] is not None


async def test_a_colliding_payment_reference_is_drawn_again(app, client, phone, monkeypatch):
    """References are short and random: a clash with an earlier payment must not lose this one."""
    import bot.payments.service

    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50", "1", "dec 15", "yes", "agree"]:
        await maria.send(text)
    taken = (await account_json(client))["payments"][0]["reference"]
    draws = iter([taken, "P-NEW22"])
    monkeypatch.setattr(bot.payments.service, "new_payment_reference", lambda: next(draws))
    for text in ["pay", "ok", "60", "1", "dec 16", "yes"]:
        await maria.send(text)
    (done,) = await maria.send("agree")
    assert "Ref P-NEW22" in done
    assert sorted(p["reference"] for p in (await account_json(client))["payments"]) == sorted(
        [taken, "P-NEW22"]
    )


async def test_a_hello_is_answered_with_where_things_stand_never_an_apology(app, client, phone):
    await add_account(app)
    maria = phone()
    (hello,) = await maria.send("hi")
    link = hello.split("open ", 1)[1].split(" ", 1)[0]
    assert link.startswith("https://paybot.test/p/")
    assert hello == (
        "Hi Maria!\nYour balance on Acme Card ending 4821 is $1,250.00. Reply PAY to pay by text "
        f"or open {link} . Reply AGENT for a person, HELP for help."
    )
    for text in ["pay", "ok"]:
        await maria.send(text)
    # Three hellos at the amount step: the question again each time, never a miss counted
    # towards the handoff that three misreads bring.
    asked = ["Hi Maria!\nHow much would you like to pay? Reply an amount from $25.00 to "
             "$1,250.00, or FULL."]
    assert [await maria.send(text) for text in ["Hello!", "hey", "good morning"]] == [asked] * 3
    (confirm,) = await maria.send("50")
    assert confirm.startswith("Pay with Visa ending 4242?")


async def test_an_account_without_a_description_reads_as_your_account(app, client, phone):
    from bot.ledger.models import Account

    await add_account(app)
    async with app[appkeys.DATABASE].session() as session:
        (account,) = await session.scalars(select(Account))
        account.description = ""
        await session.commit()
    assert await phone().send("balance") == ["Your balance on your account is $1,250.00."]
