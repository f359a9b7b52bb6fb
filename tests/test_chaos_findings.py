"""What the chaos run (bench/chaos) found in the product, each as the smallest test that shows it
(and holds its fix)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Message
from tests.seed import add_account


@asynccontextmanager
async def inbound_refused_by_the_database(app, number: str):  # type: ignore[no-untyped-def]
    """The database refuses to store what one number sends, as PostgreSQL does while it
    restarts (the run's fault: every connection refused for a few seconds)."""
    database = app[appkeys.DATABASE]
    async with database.engine.begin() as conn:
        if database.is_sqlite:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_inbound BEFORE INSERT ON messages WHEN "
                f"NEW.direction = 'inbound' AND NEW.phone = '{number}' "
                "BEGIN SELECT RAISE(ABORT, 'database restarting'); END"
            )
        else:
            await conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION refuse_inbound() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.direction = 'inbound' AND NEW.phone = '{number}' THEN "
                "RAISE EXCEPTION 'database restarting'; END IF; RETURN NEW; END $$ "
                "LANGUAGE plpgsql"
            )
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_inbound BEFORE INSERT ON messages "
                "FOR EACH ROW EXECUTE FUNCTION refuse_inbound()"
            )
    try:
        yield
    finally:
        async with database.engine.begin() as conn:
            if database.is_sqlite:
                await conn.exec_driver_sql("DROP TRIGGER refuse_inbound")
            else:
                await conn.exec_driver_sql("DROP TRIGGER refuse_inbound ON messages")
                await conn.exec_driver_sql("DROP FUNCTION refuse_inbound()")


async def test_a_text_the_database_could_not_store_is_answered_503_and_its_retry_is_answered(
        app, phone) -> None:
    """Found by the chaos run: while PostgreSQL restarted, texts were answered 200 "Sorry,
    something went wrong on our side" and never stored. Twilio does not send a 200 again, so
    the message was lost ("every inbound message is stored before it is answered"). A 5xx lets
    Twilio's retry (the same MessageSid) store it once the database is back."""
    await add_account(app)
    maria = phone()
    async with inbound_refused_by_the_database(app, maria.number):
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
