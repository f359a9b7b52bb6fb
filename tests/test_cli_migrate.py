"""`paybot migrate`: the real command in a subprocess on a fresh SQLite file, as a deployment's
one-shot migration step runs it: from which revision to which, idempotent, `--check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from bot.cli.migrate import shown_url
from bot.ledger.db import alembic_config

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ScriptDirectory.from_config(alembic_config())
HEAD = SCRIPTS.get_current_head()
BEFORE_HEAD = SCRIPTS.get_revision(HEAD).down_revision


def title(revision: str) -> str:
    return SCRIPTS.get_revision(revision).doc.split(":")[0].strip()


def paybot(url: str, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYBOT_", "DATABASE_"))}
    env.update(DATABASE_URL=url, PAYBOT_DATA_DIR=str(Path(url.removeprefix("sqlite:///")).parent))
    done = subprocess.run([sys.executable, "-m", "bot.cli", "migrate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_an_empty_database_is_migrated_once_and_then_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'paybot.sqlite3'}"
    head = f"{HEAD} ({title(HEAD)})"
    count = len(list(SCRIPTS.walk_revisions()))

    assert paybot(url, "--check") == (
        1, f"{url}: at no revision (an empty database); this version needs {head}, "
           f"{count} migrations to run: paybot migrate\n", "")
    assert paybot(url) == (
        0, f"{url}: migrated from no revision (an empty database) to {head} "
           f"({count} migrations).\n", "")
    assert paybot(url) == (0, f"{url}: at {head}, the latest; nothing to do.\n", "")
    assert paybot(url, "--check") == (0, f"{url}: at {head}, the latest; nothing to do.\n", "")


def test_a_database_one_behind_gets_the_one_migration(tmp_path: Path) -> None:
    path = tmp_path / "paybot.sqlite3"
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BEFORE_HEAD)
    engine.dispose()

    code, out, err = paybot(url, "--check")
    assert (code, err) == (1, "")
    assert out == (f"{url}: at {BEFORE_HEAD} ({title(BEFORE_HEAD)}); this version needs "
                   f"{HEAD} ({title(HEAD)}), 1 migration to run: paybot migrate\n")
    assert paybot(url) == (0, f"{url}: migrated from {BEFORE_HEAD} ({title(BEFORE_HEAD)}) to "
                              f"{HEAD} ({title(HEAD)}) (1 migration).\n", "")


def test_the_database_is_named_without_its_password() -> None:
    assert shown_url("postgresql://paybot:s3cret@db:5432/paybot") == (
        "postgresql://paybot:***@db:5432/paybot")


def test_a_database_a_later_version_migrated_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "paybot.sqlite3"
    url = f"sqlite:///{path}"
    assert paybot(url)[0] == 0
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()

    expected = (f"{url}: at 9999, which this version does not know (its latest is {HEAD} "
                f"({title(HEAD)})): a later version migrated it. Deploy that version again, or "
                "see docs/operations.md (rolling back).\n")
    assert paybot(url) == (1, expected, "")
    assert paybot(url, "--check") == (1, expected, "")
