"""Customers understood in their words (issue 15), whole conversations through the signed Twilio
webhook: an intent with its slots skips the questions it answers ("pay 50", "$40 next friday",
"pay it all on the 15th", "can i pay next friday", "can i do 3 payments") and every rule still
holds; "who is this" gets the creditor and the disclosure; a reply not understood re-asks the
question with the same link; AGREE with nothing pending says so; a customer asking again for a
person always gets one "still in line"."""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Creditor, Handoff, Link, Payment
from bot.outreach.compliance import DEFAULT_DISCLOSURE
from tests.seed import add_account

CONTACT_REVIEW = "We have your email as m***@example.com. Reply OK, or send a new email."
ASK_AMOUNT = "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
ASK_DATE = "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
MENU = re.compile(
    r"Your balance on Acme Card ending 4821 is \$1,250\.00\. Reply PAY to pay by text or open "
    r"(https://paybot\.test/p/\S+) \. Reply AGENT for a person, HELP for help\."
)
METHOD = re.compile(
    r"Pay with Visa ending 4242\? Reply 1 for Visa ending 4242, 2 to add a card or bank "
    r"account: https://paybot\.test/p/\S+"
)
STILL_IN_LINE = (
    "You are still in line for a member of our team, who will text you back here soon. Reply "
    "MENU to use the automated assistant meanwhile."
)


async def rows(app, model, *where):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))


async def paid_through(maria) -> str:  # type: ignore[no-untyped-def]
    assert (await maria.send("yes"))[0].startswith("Reply AGREE to authorize this payment")
    (done,) = await maria.send("agree")
    return done


# --------------------------------------------------------------------- slots in one message


async def test_pay_50_skips_the_amount_question(app, phone):
    await add_account(app)
    maria = phone()
    assert await maria.send("pay 50") == [CONTACT_REVIEW]
    (method,) = await maria.send("ok")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [ASK_DATE]
    assert await maria.send("now") == [
        "Confirm: $50.00 from Visa ending 4242 today. Reply YES to confirm or NO to change."
    ]
    done = await paid_through(maria)
    assert done.startswith("Done: $50.00 paid with Visa ending 4242. Ref P-")


async def test_an_amount_and_a_date_skip_both_questions_and_confirm_shows_them(app, phone):
    await add_account(app)
    maria = phone()
    assert await maria.send("$40 next friday") == [CONTACT_REVIEW]
    (method,) = await maria.send("ok")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $40.00 from Visa ending 4242 on Dec 4, 2026. Reply YES to confirm or NO to "
        "change."
    ]
    done = await paid_through(maria)
    assert done.startswith("Done: $40.00 scheduled for Dec 4, 2026. Ref P-")
    (payment,) = await rows(app, Payment)
    assert (payment.amount_cents, payment.status, payment.scheduled_for) == (
        4000, "scheduled", date(2026, 12, 4)
    )


async def test_pay_40_on_the_15th_and_pay_it_all_on_the_15th(app, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    maria = phone()
    (method,) = await maria.send("pay $40 on the 15th")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $40.00 from Visa ending 4242 on Dec 15, 2026. Reply YES to confirm or NO to "
        "change."
    ]
    assert await maria.send("menu") != []
    (method,) = await maria.send("pay it all on the 15th")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $1,250.00 from Visa ending 4242 on Dec 15, 2026. Reply YES to confirm or NO "
        "to change."
    ]


async def test_a_date_alone_asks_the_amount_and_not_the_date(app, phone):
    await add_account(app)
    maria = phone()
    assert await maria.send("can i pay next friday") == [CONTACT_REVIEW]
    assert await maria.send("ok") == [ASK_AMOUNT]
    (method,) = await maria.send("75")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $75.00 from Visa ending 4242 on Dec 4, 2026. Reply YES to confirm or NO to "
        "change."
    ]


async def test_slots_at_the_amount_step(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    assert await maria.send("ok") == [ASK_AMOUNT]
    (method,) = await maria.send("$40 next friday")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $40.00 from Visa ending 4242 on Dec 4, 2026. Reply YES to confirm or NO to "
        "change."
    ]
    # NO at Confirm starts the choice again: nothing of the slots is kept.
    assert await maria.send("no") == [ASK_AMOUNT]
    await maria.send("60")
    assert await maria.send("1") == [ASK_DATE]


async def test_the_rules_still_hold_for_slots(app, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    maria = phone()
    assert await maria.send("pay 5000") == [
        "That is more than you owe. Reply an amount up to $1,250.00, or FULL."
    ]
    assert await maria.send("menu") != []
    assert await maria.send("pay $5 tomorrow") == [
        "The smallest payment we can take is $25.00. Reply an amount of at least $25.00."
    ]
    assert await maria.send("menu") != []
    await maria.send("pay 50 on 6/1/2027")  # beyond the furthest date: asked at its step
    assert await maria.send("1") == [f"That date is too far ahead.\n{ASK_DATE}"]
    assert await maria.send("menu") != []
    await maria.send("pay 50 yesterday")
    assert await maria.send("1") == [f"That date has already passed.\n{ASK_DATE}"]
    assert await rows(app, Payment) == []


async def test_a_date_is_refused_with_the_reason_when_scheduling_is_off(app, phone):
    await add_account(
        app, creditor_settings={"contact_review": False, "schedule_payment": False}
    )
    maria = phone()
    (refused,) = await maria.send("$40 next friday")
    reason, method = refused.split("\n")
    assert reason == "Payments by text are made today: we cannot schedule one for Dec 4, 2026."
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "Confirm: $40.00 from Visa ending 4242 today. Reply YES to confirm or NO to change."
    ]


async def test_a_settlement_is_paid_today_whatever_date_was_asked(app, phone):
    await add_account(app, offers=True, creditor_settings={"contact_review": False})
    maria = phone()
    (offers,) = await maria.send("pay it all next friday")
    assert offers.startswith("Offers for you: 1) Pay $800.00 by Dec 31, 2026")
    (method,) = await maria.send("1")
    assert METHOD.fullmatch(method), method
    assert await maria.send("1") == [
        "A settlement is paid today, so this payment cannot wait until Dec 4, 2026.\n"
        "Confirm: $800.00 from Visa ending 4242 today to settle your balance in full. Reply YES "
        "to confirm or NO to change."
    ]


async def test_three_payments_shows_the_plan_offers(app, phone):
    await add_account(app, offers=True, creditor_settings={"contact_review": False})
    maria = phone()
    (offers,) = await maria.send("can i do 3 payments")
    assert offers.startswith("Offers for you: 1) Pay $800.00 by Dec 31, 2026")
    assert "2) 6 monthly payments of $208.34" in offers


async def test_three_payments_without_a_plan_on_offer_says_a_person_can_set_one_up(app, phone):
    await add_account(app)
    maria = phone()
    (reply,) = await maria.send("3 payments")
    first, menu = reply.split("\n")
    assert first == (
        "We cannot set up a payment plan by text for your account, but a member of our team "
        "can: reply AGENT."
    )
    assert MENU.fullmatch(menu), menu
    await maria.send("pay")
    assert await maria.send("ok") == [ASK_AMOUNT]
    assert await maria.send("can i do 3 payments") == [
        "We cannot set up a payment plan by text for your account, but a member of our team "
        f"can: reply AGENT.\n{ASK_AMOUNT}"
    ]


# --------------------------------------------------------------------- who is this


async def test_who_is_this_gets_the_creditor_the_disclosure_and_the_support_contact(
    app, phone, clock
):
    await add_account(app)
    assert await phone().send("who is this?") == [
        "This is Northwind Recovery, texting about your account. This is a communication from "
        "a debt collector. Questions? Contact support@paybot.example. Reply HELP for help, STOP "
        "to opt out."
    ]
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        creditor.disclosure = "Northwind Recovery is a debt collector."
        creditor.support_contact = "1-800-555-0199"
        await session.commit()
    clock.advance(timedelta(minutes=2))  # a creditor's terms are cached for a minute
    # Asked in Spanish: answered in Spanish, with Spanish offered (the account is in English).
    assert await phone().send("Quien es") == [
        "Le escribe Northwind Recovery sobre su cuenta. Northwind Recovery is a debt collector. "
        "¿Dudas? 1-800-555-0199. Responda AYUDA para ayuda, ALTO para no recibir mas.\n"
        "¿Prefiere español? Responda ESPAÑOL. To continue in English, reply ENGLISH."
    ]


async def test_who_is_this_from_a_stranger_reads_the_brand_and_the_default_disclosure(app, phone):
    await add_account(app)
    assert DEFAULT_DISCLOSURE == "This is a communication from a debt collector."
    (reply,) = await phone("+15555550199").send("who are you")
    assert reply == (
        "This is PayBot, texting about your account. This is a communication from a debt "
        "collector. Questions? Contact support@paybot.example. Reply HELP for help, STOP to opt "
        "out."
    )


# --------------------------------------------------------------------- misreads and AGREE


async def test_a_misread_re_asks_with_the_same_link(app, phone):
    await add_account(app)
    maria = phone()
    (menu,) = await maria.send("hi")
    link = MENU.search(menu).group(1)
    replies = [await maria.send(text) for text in ["banana", "what"]]
    for (reply,) in replies:
        sorry, again = reply.split("\n")
        assert sorry == "Sorry, I did not understand that."
        assert MENU.fullmatch(again) and MENU.fullmatch(again).group(1) == link
    assert len(await rows(app, Link)) == 1  # one link, not one per misread
    (fresh,) = await maria.send("link")  # asked for: a new one
    assert link not in fresh and len(await rows(app, Link)) == 2


async def test_agree_with_nothing_pending_says_so_and_pay_still_works(app, phone):
    await add_account(app)
    maria = phone()
    for _ in range(3):
        (reply,) = await maria.send("agree")
        nothing, menu = reply.split("\n")
        assert nothing == "There is nothing waiting for your agreement now."
        assert MENU.fullmatch(menu), menu
    assert await rows(app, Handoff) == []  # never counted towards the handoff
    assert await maria.send("pay") == [CONTACT_REVIEW]


async def test_pay_leaves_the_plan_options(app, phone):
    await add_account(app)
    maria = phone()
    (none,) = await maria.send("PLAN")
    assert none.startswith("You have no payment plan with us.")
    assert await maria.send("pay") == [CONTACT_REVIEW]


# --------------------------------------------------------------------- asked again, told again


async def test_asked_again_after_menu_gets_one_still_in_line(app, phone):
    await add_account(app)
    maria = phone()
    (hardship,) = await maria.send("i lost my job")
    assert hardship.startswith("I'm sorry to hear that.")
    (menu,) = await maria.send("menu")
    assert MENU.fullmatch(menu), menu
    (dispute,) = await maria.send("this is not my debt")
    assert dispute.startswith("You have the right to dispute this debt.")
    assert await maria.send("hello?") == [STILL_IN_LINE]
    assert await maria.send("anyone there?") == []  # stored for the agents, not a string
    (handoff,) = await rows(app, Handoff)
    assert handoff.reason == "hardship"


async def test_a_first_request_after_a_conversation_still_gets_its_still_in_line(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("pay")
    await maria.send("ok")
    assert (await maria.send("AGENT"))[0].startswith("Thanks. A member of our team")
    assert await maria.send("hello?") == [STILL_IN_LINE]
    assert await maria.send("hello??") == []
