"""A database that refuses what one number's messages write, for tests of what a failure at the
worst moment leaves (a real refusal by the database, a trigger: no mock of our own code)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from bot import appkeys


@asynccontextmanager
async def messages_refused(app: web.Application, number: str, *, direction: str,
                           reason: str) -> AsyncIterator[None]:
    """While inside, inserting a `direction` message ('inbound' or 'outbound') of `number`
    fails with `reason`, on SQLite and on PostgreSQL alike."""
    database = app[appkeys.DATABASE]
    name = f"refuse_{direction}"
    async with database.engine.begin() as conn:
        if database.is_sqlite:
            await conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON messages WHEN "
                f"NEW.direction = '{direction}' AND NEW.phone = '{number}' "
                f"BEGIN SELECT RAISE(ABORT, '{reason}'); END")
        else:
            await conn.exec_driver_sql(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.direction = '{direction}' AND NEW.phone = '{number}' THEN "
                f"RAISE EXCEPTION '{reason}'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
            await conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON messages "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()")
    try:
        yield
    finally:
        async with database.engine.begin() as conn:
            if database.is_sqlite:
                await conn.exec_driver_sql(f"DROP TRIGGER {name}")
            else:
                await conn.exec_driver_sql(f"DROP TRIGGER {name} ON messages")
                await conn.exec_driver_sql(f"DROP FUNCTION {name}()")
