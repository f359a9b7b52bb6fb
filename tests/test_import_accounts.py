"""`paybot import-accounts FILE`, run as the operator runs it, against the test's database."""

from __future__ import annotations

import csv
import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.accounts.loading import import_csv
from bot.clock import FrozenClock
from bot.ledger.db import Database
from bot.ledger.models import Account, AuditEvent, Base, Creditor
from bot.security import ssn_digest
from tests.conftest import START

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SECRET = "test-secret-key"
HEADER = "account_id,first_name,last_name,phone,email,balance,ssn"


def cli_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TWILIO_", "STRIPE_", "SENDGRID_", "PAYBOT_"))}
    env.update(DATABASE_URL=database_url, SECRET_KEY=SECRET, PAYBOT_DATA_DIR=str(tmp_path / "var"))
    return env


def run_import(database_url: str, path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "import-accounts", str(path)],
        cwd=ROOT, env=cli_env(database_url, tmp_path), capture_output=True, text=True, timeout=120,
    )


def write(tmp_path: Path, content: bytes | str, name: str = "accounts.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


async def dump(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table."""
    database = Database(database_url)
    try:
        async with database.engine.connect() as conn:
            return {
                table.name: [tuple(row) for row in (await conn.execute(
                    select(table).order_by(*table.primary_key.columns))).all()]
                for table in Base.metadata.sorted_tables
            }
    finally:
        await database.close()


async def accounts(database_url: str) -> dict[str, Account]:
    database = Database(database_url)
    try:
        async with database.session() as session:
            return {a.account_ref: a for a in await session.scalars(select(Account))}
    finally:
        await database.close()


def stored_bytes(database_url: str) -> bytes:
    """The SQLite file (and its WAL) as bytes; nothing for PostgreSQL."""
    if not database_url.startswith("sqlite:///"):
        return b""
    path = Path(database_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


# --- the contract ---

async def test_import_creates_accounts_and_a_rerun_changes_nothing(database_url, tmp_path):
    result = run_import(database_url, DATA / "accounts.csv", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 created, 0 updated, 0 rejected"
    assert result.stderr == ""  # no log noise, no progress bar when stderr is not a terminal

    stored = await accounts(database_url)
    assert sorted(stored) == ["ACC-2001", "ACC-2002", "ACC-2003"]
    maria, sam, ana = stored["ACC-2001"], stored["ACC-2002"], stored["ACC-2003"]
    assert (maria.phone, maria.email, maria.balance_cents) == (
        "+15555550101", "maria@example.com", 125000)
    assert maria.description == "Acme Card ending 4821, closed"  # a quoted comma
    assert maria.ssn_hash == ssn_digest(SECRET, "123456789") and maria.ssn_last4 == "6789"
    assert str(maria.dob) == "1980-02-29" and maria.zip_code == "10001"
    assert maria.creditor_code == "northwind"
    assert (sam.last_name, sam.phone, sam.email, sam.balance_cents) == (
        "O'Brien", "+15555550102", None, 8050)
    assert sam.timezone == "America/Los_Angeles"
    assert (ana.phone, ana.balance_cents, ana.timezone, ana.zip_code) == (
        None, 0, "America/Los_Angeles", "94110-1234")
    assert ana.creditor_code is None and str(ana.dob) == "1975-03-04"

    before = await dump(database_url)
    assert [row[0] for row in before["creditors"]] == ["northwind"]
    assert len(before["audit_events"]) == 3

    again = run_import(database_url, DATA / "accounts.csv", tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 created, 3 updated, 0 rejected")
    assert await dump(database_url) == before  # the very same ledger, row for row


async def test_changed_rows_update_the_same_accounts(database_url, tmp_path):
    assert run_import(database_url, DATA / "accounts.csv", tmp_path).returncode == 0
    ids = {ref: a.id for ref, a in (await accounts(database_url)).items()}
    path = write(tmp_path, f"{HEADER},timezone\n"
                           "acc-2001,Maria,Lopez-Diaz,5555550101,maria@example.com,99.99,,\n"
                           "ACC-2004,New,Person,5555550104,,12,,Central\n")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 created, 1 updated, 0 rejected"
    stored = await accounts(database_url)
    maria = stored["ACC-2001"]  # matched whatever the case; the stored account_id stays
    assert maria.id == ids["ACC-2001"]
    assert (maria.last_name, maria.balance_cents) == ("Lopez-Diaz", 9999)
    # What the row leaves out of the optional columns is kept.
    assert maria.ssn_last4 == "6789" and maria.timezone == "America/New_York"
    assert stored["ACC-2004"].timezone == "America/Chicago"
    database = Database(database_url)
    async with database.session() as session:
        kinds = list(await session.scalars(
            select(AuditEvent.kind).where(AuditEvent.account_id == maria.id)))
    await database.close()
    assert kinds == ["account_created", "account_updated"]


async def test_bad_rows_are_reported_by_line_and_good_rows_kept(database_url, tmp_path):
    result = run_import(database_url, DATA / "accounts_with_errors.csv", tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == "4 created, 0 updated, 6 rejected"
    name = DATA / "accounts_with_errors.csv"
    # Line numbers are the file's, counting the lines inside quoted multi-line cells; a record
    # that spans lines is reported on its first line.
    assert result.stderr.splitlines() == [
        f"{name}:5: phone '***-**-****' is not a phone number",
        f"{name}:6: balance '12,50' is not an amount in dollars (e.g. 1250.00, at most 2 decimals)",
        f"{name}:9: ssn must have 9 digits",
        f"{name}:10: 9 fields, but the header has 8",
        f"{name}:11: account_id b-1 repeats the one on line 2",
        f"{name}:13: account_id is missing or has characters other than letters, digits, . _ -",
    ]
    stored = await accounts(database_url)
    assert sorted(stored) == ["B-1", "B-10", "B-2", "B-8"]
    assert stored["B-1"].first_name == "Good"  # the duplicate later in the file did not win
    assert stored["B-2"].description == "first line second line, with a comma"
    for secret in ("123-45-6789", "123456789", "987-65-432", "98765432"):
        assert secret not in result.stderr + result.stdout


async def test_the_raw_ssn_is_stored_nowhere_and_never_printed(database_url, tmp_path):
    ssns = ["123-45-6789", "987-65-4321", "555 12 3456"]
    rows = "".join(f"S-{n},Pat,Doe,55555501{n:02d},,10.00,{ssn}\n" for n, ssn in enumerate(ssns))
    # A row whose columns are shifted puts an SSN where the phone should be.
    rows += "S-9,Pat,Doe,222-33-4444,p@example.com,10.00,\n"
    result = run_import(database_url, write(tmp_path, HEADER + "\n" + rows), tmp_path)
    assert result.returncode == 1
    assert result.stdout.startswith("3 created")
    output = result.stdout + result.stderr
    ledger = repr(await dump(database_url))
    raw = stored_bytes(database_url)
    for ssn in ssns + ["222-33-4444"]:
        digits = ssn.replace("-", "").replace(" ", "")
        for form in (ssn, digits):
            assert form not in output
            assert form not in ledger
            assert form.encode() not in raw
    stored = await accounts(database_url)
    assert [stored[f"S-{n}"].ssn_last4 for n in range(3)] == ["6789", "4321", "3456"]
    assert stored["S-2"].ssn_hash == ssn_digest(SECRET, "555123456")


# --- what the file can look like ---

async def test_bom_crlf_quotes_extra_columns_and_a_friendly_header(database_url, tmp_path):
    content = (
        "\ufeffAccount ID , First Name,Last-Name,PHONE,Email,Balance,Notes,Timezone\r\n"
        'X-1,"Smith, Jr.",Ann,5555550301,ann@example.com,"$1,000.10","said ""hi"", twice",ET\r\n'
        '\r\n'
        'X-2,Bo,Li,5555550302,,7,"multi\r\nline note",\r\n'
        'X-3,Cy,Ng,5555550303,,8,,,,\r\n'
    )
    result = run_import(database_url, write(tmp_path, content), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 created, 0 updated, 0 rejected"
    stored = await accounts(database_url)
    assert stored["X-1"].first_name == "Smith, Jr."  # the BOM did not eat the first column
    assert stored["X-1"].balance_cents == 100010
    assert stored["X-1"].timezone == "America/New_York"
    assert stored["X-2"].email is None


async def test_lines_are_counted_through_blank_lines_and_crlf(database_url, tmp_path):
    content = (f"{HEADER}\r\n\r\nY-1,A,B,5555550401,,oops,\r\n"
               'Y-2,"C\r\nD",E,5555550402,,1,\r\nY-3,F,G,,,2,\r\n')
    result = run_import(database_url, write(tmp_path, content), tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'accounts.csv'}:3: balance 'oops' is not an amount in dollars "
        "(e.g. 1250.00, at most 2 decimals)",
        f"{tmp_path / 'accounts.csv'}:6: a phone or an email is required",
    ]
    assert sorted(await accounts(database_url)) == ["Y-2"]


async def test_a_header_without_a_required_column_is_exit_2(database_url, tmp_path):
    path = write(tmp_path, "account_id,first_name,last_name,email,balance\nZ-1,A,B,a@b.co,1\n")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"paybot import-accounts: {path}: the header lacks phone (it needs account_id, "
        "first_name, last_name, phone, email, balance; optional: ssn, dob, zip, timezone, "
        "creditor, description, language)")
    assert await accounts(database_url) == {}


async def test_a_header_naming_a_column_twice_is_exit_2(database_url, tmp_path):
    path = write(tmp_path, f"{HEADER},Phone\nZ-1,A,B,5555550101,,1,,5555550102\n")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 2
    assert "the header names phone more than once" in result.stderr
    assert await accounts(database_url) == {}


async def test_a_file_that_is_not_utf8_is_refused_whole(database_url, tmp_path):
    content = f"{HEADER}\nE-1,Ok,Row,5555550501,,1,\nE-2,Jos\xe9,Cruz,5555550502,,2,\n"
    path = write(tmp_path, content.encode("cp1252"))
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f'paybot import-accounts: {path}:3: the file is not UTF-8 text '
        '(Excel: save as "CSV UTF-8")')
    assert await accounts(database_url) == {}  # not even the good first row

    path = write(tmp_path, content.encode("utf-16"), "utf16.csv")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 2
    assert "the file is UTF-16 text; save it as CSV UTF-8" in result.stderr


async def test_empty_files_and_missing_files(database_url, tmp_path):
    for content, message in ((b"", "the file is empty"), (b"\xef\xbb\xbf", "the file is empty"),
                             (b"\n\n , \n", "no header row")):
        result = run_import(database_url, write(tmp_path, content), tmp_path)
        assert result.returncode == 2, content
        assert message in result.stderr
    result = run_import(database_url, write(tmp_path, HEADER + "\n"), tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "0 created, 0 updated, 0 rejected"
    result = run_import(database_url, tmp_path / "nope.csv", tmp_path)
    assert result.returncode == 2
    assert "no such file" in result.stderr


async def test_odd_cells_are_rejected_with_a_reason_not_a_crash(database_url, tmp_path):
    rows = [
        ["O-1", "Nul\x00Byte", "X", "5555550601", "", "1", ""],
        ["O-2", "Emoji 😀", "Ünïcödé", "5555550602", "", "2", ""],
        ["O-3", "Robert'); DROP TABLE accounts;--", "X", "5555550603", "", "3", ""],
        ["O-4", "A", "B", "5555550604", "", "1e50", ""],
        ["O-5", "A" * 81, "B", "5555550605", "", "5", ""],
        ["O-6", "A", "B", "5555550606", "", "-1", ""],
    ]
    path = tmp_path / "odd.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        writer.writerows(rows)
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{path}:2: first_name contains a control character",
        f"{path}:5: balance '1e50' is not an amount in dollars (e.g. 1250.00, at most 2 decimals)",
        f"{path}:6: first_name is longer than 80 characters",
        f"{path}:7: balance cannot be negative",
    ]
    stored = await accounts(database_url)
    assert stored["O-2"].first_name == "Emoji 😀" and stored["O-2"].last_name == "Ünïcödé"
    assert stored["O-3"].first_name == "Robert'); DROP TABLE accounts;--"


# --- the operator's terminal ---

def test_a_progress_bar_when_stderr_is_a_terminal(database_url, tmp_path):
    lines = "".join(f"T-{n},A,B,55555507{n:02d},,1,\n" for n in range(40))
    path = write(tmp_path, HEADER + "\n" + lines)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    env = cli_env(database_url, tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "import-accounts", str(path)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal: it has exited
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = process.communicate(timeout=120)
    os.close(controller)
    assert process.returncode == 0
    assert stdout.decode().strip() == "40 created, 0 updated, 0 rejected"
    text = shown.decode()
    assert "importing" in text and "100%" in text and "40/40" in text


# --- a larger file, through import_csv itself ---

async def test_five_thousand_rows(database_url, tmp_path):
    path = tmp_path / "big.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*HEADER.split(","), "timezone", "creditor", "description"])
        for n in range(5000):
            balance = "not money" if n % 1000 == 999 else f"{n}.{n % 100:02d}"
            writer.writerow([f"L-{n:05d}", f"First{n}", "Last", f"+1555{n:07d}",
                             f"p{n}@example.com", balance, f"{100_000_000 + n:09d}",
                             "America/Chicago", f"creditor{n % 3}", "Acme Card"])
    database = Database(database_url)
    clock = FrozenClock(START)
    done: list[int] = []
    totals: list[int] = []
    try:
        report = await import_csv(database.session, path, secret_key=SECRET, clock=clock,
                                  progress=done.append, on_total=totals.append)
        assert (report.created, report.updated) == (4995, 0)
        assert [line for line, _ in report.errors] == [1001, 2001, 3001, 4001, 5001]
        assert totals == [5000] and sum(done) == 5000

        again = await import_csv(database.session, path, secret_key=SECRET, clock=clock)
        assert (again.created, again.updated, again.unchanged) == (0, 4995, 4995)
        async with database.session() as session:
            stored = {a.account_ref: a for a in await session.scalars(select(Account))}
            creditors = set(await session.scalars(select(Creditor.code)))
        assert len(stored) == 4995
        assert stored["L-01234"].balance_cents == 123434
        assert stored["L-01234"].ssn_last4 == "1234"
        assert creditors == {"creditor0", "creditor1", "creditor2"}
    finally:
        await database.close()


async def test_a_row_the_database_refuses_is_reported_and_the_rest_kept(database_url, tmp_path):
    """A trigger in the database refuses one account: the rest of its batch still goes in."""
    database = Database(database_url)
    async with database.engine.begin() as conn:
        if database.is_sqlite:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_r2 BEFORE INSERT ON accounts WHEN NEW.account_ref = 'R-2' "
                "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END")
        else:
            await conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION refuse_r2() RETURNS trigger AS $$ BEGIN "
                "IF NEW.account_ref = 'R-2' THEN RAISE EXCEPTION 'refused by policy'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql")
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse_r2 BEFORE INSERT ON accounts "
                "FOR EACH ROW EXECUTE FUNCTION refuse_r2()")
    path = write(tmp_path, HEADER + "\n" + "".join(
        f"R-{n},A,B,55555508{n:02d},,{n},\n" for n in range(1, 6)))
    try:
        report = await import_csv(database.session, path, secret_key=SECRET,
                                  clock=FrozenClock(START), batch_size=3)
        assert (report.created, report.updated) == (4, 0)
        assert len(report.errors) == 1
        line, reason = report.errors[0]
        assert line == 3 and reason.startswith("the database refused the row (")
        assert "refused by policy" not in reason
        assert sorted(await accounts(database_url)) == ["R-1", "R-3", "R-4", "R-5"]
    finally:
        async with database.engine.begin() as conn:
            if not database.is_sqlite:
                await conn.exec_driver_sql("DROP TRIGGER refuse_r2 ON accounts")
                await conn.exec_driver_sql("DROP FUNCTION refuse_r2()")
        await database.close()


async def test_an_empty_contact_cell_keeps_the_stored_contact(database_url, tmp_path):
    assert run_import(database_url, DATA / "accounts.csv", tmp_path).returncode == 0
    before = (await accounts(database_url))["ACC-2001"]
    path = write(tmp_path, f"{HEADER}\n"
                           "ACC-2001,Maria,Lopez,,maria.new@example.com,99.99,,\n")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 0, result.stderr
    maria = (await accounts(database_url))["ACC-2001"]
    assert (maria.phone, maria.email) == (before.phone, "maria.new@example.com")


async def test_the_language_column_sets_the_customers_language(database_url, tmp_path):
    path = write(tmp_path, f"{HEADER},language\n"
                           "L-1,Maria,Lopez,5555550401,,10,,es\n"
                           "L-2,Sam,Lee,5555550402,,10,,EN\n"
                           "L-3,Ana,Ruiz,5555550403,,10,,\n"
                           "L-4,Bo,Li,5555550404,,10,,french\n")
    result = run_import(database_url, path, tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == "3 created, 0 updated, 1 rejected"
    assert result.stderr.splitlines() == [f"{path}:5: language 'french' is not en or es"]
    stored = await accounts(database_url)
    assert {ref: a.language for ref, a in stored.items()} == {"L-1": "es", "L-2": "en", "L-3": "en"}

    # A row that leaves the column empty keeps the language on file.
    again = write(tmp_path, f"{HEADER},language\nL-1,Maria,Lopez,5555550401,,12,,\n")
    assert run_import(database_url, again, tmp_path).returncode == 0
    assert (await accounts(database_url))["L-1"].language == "es"
