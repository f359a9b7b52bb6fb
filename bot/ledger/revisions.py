"""Where the schema stands: the revision the database is at and the one the code expects
(Alembic's own record, the ``alembic_version`` table), for `paybot migrate` and its ``--check``."""

from __future__ import annotations

from dataclasses import dataclass

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from bot.ledger.db import Database, alembic_config


@dataclass(frozen=True)
class Revision:
    id: str | None  # None: an empty database, no migration ever ran
    title: str  # the migration's docstring, to its first colon or line end

    def describe(self) -> str:
        if self.id is None:
            return "no revision (an empty database)"
        return f"{self.id} ({self.title})" if self.title else self.id


@dataclass(frozen=True)
class Standing:
    current: Revision
    head: Revision
    pending: int  # migrations between the two
    known: bool = True  # False: the database is at a revision this code does not have (newer)

    @property
    def up_to_date(self) -> bool:
        return self.current.id == self.head.id


async def standing(database: Database) -> Standing:
    async with database.engine.connect() as connection:
        return await connection.run_sync(_standing)


def _standing(connection: Connection) -> Standing:
    scripts = ScriptDirectory.from_config(alembic_config(connection))
    head_id = scripts.get_current_head()
    current_id = MigrationContext.configure(connection).get_current_revision()
    known = current_id is None or _has(scripts, current_id)
    pending = 0
    if known and head_id is not None and current_id != head_id:
        pending = sum(1 for _ in scripts.iterate_revisions(head_id, current_id or "base"))

    def revision(rev_id: str | None) -> Revision:
        if rev_id is None:
            return Revision(None, "")
        if not _has(scripts, rev_id):
            return Revision(rev_id, "")
        script = scripts.get_revision(rev_id)
        title = (script.doc or "").strip().split(":")[0].splitlines()[0] if script and script.doc \
            else ""
        return Revision(rev_id, title.strip())

    return Standing(current=revision(current_id), head=revision(head_id), pending=pending,
                    known=known)


def _has(scripts: ScriptDirectory, rev_id: str) -> bool:
    try:
        return scripts.get_revision(rev_id) is not None
    except CommandError:
        return False
