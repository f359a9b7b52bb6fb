"""What the chaos run (bench/chaos) found in the product, each as the smallest test that shows it
(and holds its fix)."""

from __future__ import annotations

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Message
from tests.db_faults import messages_refused
from tests.seed import add_account


async def test_a_text_the_database_could_not_store_is_answered_503_and_its_retry_is_answered(
        app, phone) -> None:
    """Found by the chaos run: while PostgreSQL restarted, texts were answered 200 "Sorry,
    something went wrong on our side" and never stored. Twilio does not send a 200 again, so
    the message was lost ("every inbound message is stored before it is answered"). A 5xx lets
    Twilio's retry (the same MessageSid) store it once the database is back."""
    await add_account(app)
    maria = phone()
    # The database refuses to store what one number sends, as PostgreSQL does while it restarts.
    async with messages_refused(app, maria.number, direction="inbound", reason="restarting"):
        status, body = await maria.post("PAY", sid="SM" + "5" * 32)
    async with app[appkeys.DATABASE].session() as session:
        stored = list(await session.scalars(select(Message.body)))
    assert stored == []
    assert (status, body) == (503, ["not stored; send it again"])
    # Twilio's retry, the same MessageSid, once the database is back: stored and answered once.
    assert await maria.send("PAY", sid="SM" + "5" * 32) == [
        "We have your email as m***@example.com. Reply OK, or send a new email."]
    async with app[appkeys.DATABASE].session() as session:
        stored = list(await session.scalars(select(Message.body).order_by(Message.id)))
    assert stored == [
        "PAY", "We have your email as m***@example.com. Reply OK, or send a new email."]
