"""`paybot staff add|list|disable|reset`: an operator makes console accounts without SQL. A piped
password is taken; otherwise a one-time setup link is printed (only its hash is kept); disabling
ends every session; a reset makes a new link and the old password stops working."""

from __future__ import annotations

import io
import sys

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import AuditEvent, Staff
from tests.cli_support import in_process_paybot
from tests.console_support import PASSWORD, Console


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://127.0.0.1:8080")
    return in_process_paybot(settings, monkeypatch, capsys, "staff")


def stdin(monkeypatch, text: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


async def test_add_with_a_piped_password_then_sign_in(app, client, paybot, monkeypatch):
    stdin(monkeypatch, PASSWORD + "\n")
    code, out, err = await paybot("add", "Ana@PayBot.test", "--name", "Ana", "--role", "agent")
    assert (code, err, out) == (0, "", "Added agent Ana <ana@paybot.test>.\n")
    assert (await Console(client).sign_in("ana@paybot.test")).status == 303
    code, out, _ = await paybot("list")
    assert out == "Ana  ana@paybot.test  agent  active\n"


async def test_add_without_a_password_prints_a_one_time_setup_link(app, client, paybot,
                                                                   monkeypatch):
    stdin(monkeypatch, "")
    code, out, err = await paybot("add", "sam@paybot.test", "--name", "Sam", "--role",
                                  "supervisor")
    assert (code, err) == (0, "")
    first, second = out.splitlines()
    assert first == "Added supervisor Sam <sam@paybot.test>."
    assert second.startswith(
        "One-time setup link (valid 72 hours): http://127.0.0.1:8080/agent/setup/")
    token = second.rsplit("/", 1)[1]
    assert len(token) >= 24
    async with app[appkeys.DATABASE].session() as session:
        staff = await session.scalar(select(Staff))
    assert staff.password_hash is None and token not in (staff.setup_token_sha256 or "")
    page = await client.get(f"/agent/setup/{token}")
    assert page.status == 200 and "otpauth://totp/" in await page.text()
    code, out, _ = await paybot("list")
    assert out == "Sam  sam@paybot.test  supervisor  setup pending\n"


async def test_bad_input_is_named_and_nothing_is_added(app, client, paybot, monkeypatch):
    stdin(monkeypatch, "short\n")
    assert await paybot("add", "ana@paybot.test", "--name", "Ana") == (
        2, "", "paybot staff add: Use at least 12 characters.\n")
    stdin(monkeypatch, "")
    assert await paybot("add", "not-an-email", "--name", "Ana") == (
        2, "", "paybot staff add: 'not-an-email' is not an email address\n")
    assert await paybot("add", "ana@paybot.test", "--name", "agent:root") == (
        2, "", "paybot staff add: a name is 1 to 32 letters, digits, spaces, dots, dashes or "
               "underscores\n")
    assert await paybot("disable", "nobody@paybot.test") == (
        2, "", "paybot staff disable: no staff account for nobody@paybot.test\n")
    async with app[appkeys.DATABASE].session() as session:
        assert list(await session.scalars(select(Staff))) == []


async def test_disable_ends_sessions_and_reset_makes_a_new_link(app, client, paybot,
                                                                monkeypatch):
    stdin(monkeypatch, PASSWORD + "\n")
    await paybot("add", "ana@paybot.test", "--name", "Ana")
    console = Console(client)
    await console.sign_in()
    assert (await console.get("/agent/inbox/waiting")).status == 200
    code, out, err = await paybot("disable", "ana@paybot.test")
    assert (code, out) == (0, "Disabled Ana <ana@paybot.test>: signed out everywhere.\n")
    assert (await console.get("/agent/inbox/waiting")).status == 303
    assert (await console.sign_in()).status == 401
    code, out, _ = await paybot("reset", "ana@paybot.test")
    assert code == 0 and "/agent/setup/" in out
    assert (await console.sign_in()).status == 401  # the old password is gone
    async with app[appkeys.DATABASE].session() as session:
        kinds = [(e.kind, e.actor) for e in await session.scalars(
            select(AuditEvent).where(AuditEvent.kind.in_(
                ("staff_added", "staff_disabled", "staff_reset"))).order_by(AuditEvent.id))]
    assert kinds == [("staff_added", "cli"), ("staff_disabled", "cli"), ("staff_reset", "cli")]
