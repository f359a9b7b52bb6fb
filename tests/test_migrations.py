"""The migrations build exactly the schema the models describe, on either backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from bot.ledger.db import Database
from bot.ledger.models import Base


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await database.close()
    assert diff == []
