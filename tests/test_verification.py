"""An unknown number proves who it is before anything about an account is shown."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.seed import add_account

STRANGER = "+15555559999"


def code_sent_to(providers, number: str) -> str:  # type: ignore[no-untyped-def]
    texts = [m.body for m in providers.sms.outbox if m.to == number]
    assert texts, f"no code was texted to {number}"
    return re.search(r"code is (\d{6})", texts[-1]).group(1)  # type: ignore[union-attr]


async def test_code_to_the_phone_on_file_unlocks_the_account(app, phone, providers):
    await add_account(app)
    stranger = phone(STRANGER)
    (ask,) = await stranger.send("balance")
    assert "reply with your account ID" in ask
    assert "1,250" not in ask
    (sent,) = await stranger.send("ACC-1001")
    assert sent.startswith("If that account ID is on file, we have sent a code")
    code = code_sent_to(providers, "+15555550100")
    replies = await stranger.send(code)
    text = "\n".join(replies)
    assert "Thanks Maria, you are verified." in text
    assert "Your balance on Acme Card ending 4821 is $1,250.00" in text
    (contact,) = await stranger.send("pay")
    assert contact.startswith("We have your email as m***@example.com")


async def test_unknown_account_gets_the_same_answer_and_reveals_nothing(app, phone, providers):
    await add_account(app)
    stranger = phone(STRANGER)
    await stranger.send("hello")
    (sent,) = await stranger.send("NOPE-404")
    assert sent.startswith("If that account ID is on file, we have sent a code")
    assert providers.sms.outbox == []
    (wrong,) = await stranger.send("123456")
    assert wrong == "That did not match. 2 tries left."


async def test_three_failures_spend_the_code_and_the_number_waits(app, phone, providers, clock):
    # Once a lock for everyone (anyone could lock anyone out); now the code is spent and only
    # this number waits (tests/test_lookup_limits.py holds the others to their way in).
    await add_account(app)
    stranger = phone(STRANGER)
    await stranger.send("hello")
    await stranger.send("ACC-1001")
    spent_code = code_sent_to(providers, "+15555550100")
    assert await stranger.send("000000") == ["That did not match. 2 tries left."]
    assert await stranger.send("000001") == ["That did not match. 1 try left."]
    (spent,) = await stranger.send("000002")
    assert spent == (
        "That did not match, and that code no longer works. For your security, please wait "
        "1 minute, then reply with your account ID to get a new one."
    )
    (waiting,) = await stranger.send("ACC-1001")
    assert waiting.startswith("For your security, please wait 1 minute before you try again.")
    clock.advance(timedelta(minutes=1))
    (sent,) = await stranger.send("ACC-1001")
    assert sent.startswith("If that account ID is on file, we have sent a code")
    if spent_code != code_sent_to(providers, "+15555550100"):
        (refused,) = await stranger.send(spent_code)  # the spent code opens nothing
        assert refused.startswith("That did not match.")


async def test_knowledge_answers_when_there_is_no_contact_on_file(app, phone):
    await add_account(
        app, phone=None, email="maria@example.com", ssn="123-45-6789", dob="1985-04-12"
    )
    # An account whose only contact is email gets its code by email; remove both to fall back.
    from sqlalchemy import update

    from bot import appkeys
    from bot.ledger.models import Account

    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None))
        await session.commit()
    stranger = phone(STRANGER)
    await stranger.send("hi")
    (ask,) = await stranger.send("ACC-1001")
    # The same answer as for any account id: nothing says that this one has no contact.
    assert ask.startswith("If that account ID is on file, we have sent a code")
    assert "No phone or email on file? Reply with the last 4 of your SSN" in ask
    (wrong,) = await stranger.send("6789 01/01/1990")
    assert wrong == "That did not match. 2 tries left."
    replies = await stranger.send("6789 04/12/1985")
    assert "you are verified" in "\n".join(replies)


async def test_code_by_email_when_the_account_has_no_phone(app, phone, providers):
    await add_account(app, phone=None, email="maria@example.com")
    stranger = phone(STRANGER)
    await stranger.send("hi")
    await stranger.send("acc-1001")
    (email,) = providers.email.outbox
    assert email.to == "maria@example.com"
    code = re.search(r"code is (\d{6})", email.text).group(1)  # type: ignore[union-attr]
    assert "you are verified" in "\n".join(await stranger.send(code))


async def test_an_expired_code_does_not_work(app, phone, providers, clock):
    await add_account(app)
    stranger = phone(STRANGER)
    await stranger.send("hi")
    await stranger.send("ACC-1001")
    clock.advance(timedelta(minutes=11))
    (reply,) = await stranger.send(code_sent_to(providers, "+15555550100"))
    assert reply == "That did not match. 2 tries left."


async def test_no_code_is_texted_to_an_opted_out_phone(app, phone, providers):
    await add_account(app)
    await phone("+15555550100").send("STOP")
    stranger = phone(STRANGER)
    await stranger.send("hi")
    await stranger.send("ACC-1001")
    assert [m.to for m in providers.sms.outbox] == []
    (email,) = providers.email.outbox
    assert email.to == "maria@example.com"
