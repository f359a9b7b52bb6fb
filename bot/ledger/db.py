"""The SQL engine: plain DATABASE_URLs in, async drivers underneath, Alembic for the schema."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def async_url(database_url: str) -> str:
    """`sqlite:///x` -> aiosqlite, `postgresql://` -> asyncpg; the contract stays the plain URL."""
    if database_url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + database_url.removeprefix("sqlite:///")
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url.removeprefix(prefix)
    raise ValueError("unsupported DATABASE_URL")


class Database:
    def __init__(self, database_url: str, *, ping_after_idle_seconds: float = 5.0) -> None:
        self.url = database_url
        self.is_sqlite = database_url.startswith("sqlite:")
        if self.is_sqlite:
            Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(async_url(database_url))
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_async_engine(
                async_url(database_url), pool_size=10, max_overflow=10, pool_recycle=1800
            )
            _ping_when_idle(self.engine, after_seconds=ping_after_idle_seconds)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite lets one writer in at a time and makes the others sleep and retry (its busy
        # handler backs off up to 100 ms a try): writers of this process queue here instead.
        self._writers = asyncio.Lock() if self.is_sqlite else None
        self._writing: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "paybot_writing", default=False
        )
        # One statement, one round trip, durable when it returns: no BEGIN/COMMIT around it.
        self.autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def writer(self) -> AsyncIterator[None]:
        """Around work that writes: on SQLite, one such block of this process at a time, in
        order; on PostgreSQL, nothing (row locks and MVCC let writers overlap)."""
        if self._writers is None or self._writing.get():
            yield
            return
        async with self._writers:
            holding = self._writing.set(True)
            try:
                yield
            finally:
                self._writing.reset(holding)

    @asynccontextmanager
    async def between_writes(self) -> AsyncIterator[None]:
        """Around a wait on the outside world (a card processor) between two transactions of
        writing work: other writers of this process go on meanwhile, then it queues again."""
        if self._writers is None or not self._writing.get():
            yield
            return
        self._writers.release()
        paused = self._writing.set(False)
        try:
            yield
        finally:
            self._writing.reset(paused)
            await self._writers.acquire()

    async def autocommit_once(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run `work` (one idempotent statement) on an autocommit connection, and once more on
        a fresh connection if the first was found cut (a database restart within the idle-ping
        window): the pool then drops every connection it had, so the retry connects anew."""
        try:
            async with self.writer(), self.autocommit.connect() as connection:
                return await work(connection)
        except DBAPIError as error:
            if not error.connection_invalidated:
                raise
        async with self.writer(), self.autocommit.connect() as connection:
            return await work(connection)

    @asynccontextmanager
    async def advisory_lock(self, name: str, *, wait_seconds: float = 30.0) -> AsyncIterator[None]:
        """A lock by name across every process on this database, held while the block runs
        (bot/coordination.py's lock while Redis is away). PostgreSQL: a transaction-scoped
        advisory lock on a connection of its own, so it goes with the transaction whatever
        happens (a crash, a cut connection). SQLite: nothing more is needed, its writers
        already queue one at a time (`writer`) and the file admits one transaction."""
        if self.is_sqlite:
            yield
            return
        key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big",
                             signed=True)
        async with self.engine.begin() as connection:
            await connection.execute(text(f"SET LOCAL lock_timeout = {int(wait_seconds * 1000)}"))
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            yield

    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade_to_head)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def revisions(self) -> tuple[set[str], set[str]]:
        """The schema revisions the database is at, and the migrations' heads (`/readyz`)."""
        async with self.engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: set(MigrationContext.configure(sync).get_current_heads())
            )
        return current, set(migration_heads())

    async def close(self) -> None:
        await self.engine.dispose()


LAST_USED = "paybot_last_used"  # where a pooled connection's record keeps when it was last used


def _ping_when_idle(engine: AsyncEngine, *, after_seconds: float) -> None:
    """Check a pooled connection before use only when it has sat idle for a while.

    A database restart or a proxy's idle cut leaves dead connections in the pool; pinging on
    every checkout (pool_pre_ping) would find them but costs a round trip per transaction,
    twice per inbound SMS. A connection in steady use is alive; one that waited is pinged, and a
    failed ping makes the pool connect afresh (DisconnectionError)."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "connect")
    @event.listens_for(pool, "checkin")
    def _mark_used(_dbapi_connection: Any, record: Any) -> None:
        record.info[LAST_USED] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(LAST_USED, 0.0) < after_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("a pooled connection failed its ping") from error


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def migration_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def _upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
