"""`paybot creditors list|show|set`: an operator names a creditor, sets its Reg F disclosure and
its flow settings without SQL; a bad value is refused, named, and changes nothing; the next
conversation follows what was set; every change is audited with who made it."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import AuditEvent, Creditor
from tests.cli_support import in_process_paybot
from tests.seed import add_account


@pytest.fixture
def paybot(settings, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    """Run `paybot creditors ARGS...` in this process: (exit code, stdout, stderr)."""
    return in_process_paybot(settings, monkeypatch, capsys, "creditors")


async def stored(app) -> Creditor:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        assert creditor is not None
        return creditor


async def test_list_and_show_say_what_customers_meet_and_which_settings_are_its_own(
    app, client, paybot
):
    await add_account(app, creditor_settings={"min_payment_cents": 5000})
    code, out, err = await paybot("list")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["northwind  Northwind Recovery  1 account(s)"]

    code, out, err = await paybot("show", "northwind")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "northwind: Northwind Recovery, 1 account(s)",
        "brand: (its name)",
        "support contact: (the default)",
        "disclosure: This is a communication from a debt collector.",
        "flow settings (* its own; the others are the defaults):",
        "  contact_review = true",
        "  virtual_collection = true",
        "  allow_skip_offer = true",
        "  schedule_payment = true",
        "* min_payment_cents = 5000",
        "  furthest_schedule_days = 90",
        '  methods_enabled = ["card", "us_bank_account"]',
        "  quiet_hours_start = 21",
        "  quiet_hours_end = 8",
        "  session_timeout_minutes = 30",
        '  terms_version = "2026-11"',
        "  max_invalid_replies = 3",
        "  sms_plan_signing = true",
        "  offer_lifetime_days = 14",
        "  reminder_days_before = [7, 3, 1]",
        "  plan_max_installments = 24",
        "  plan_start_horizon_days = 30",
        "  plan_skips_allowed = 1",
        "  plan_move_max_days = 14",
        "  max_proactive_per_week = 5",
        '  agent_hours = "mon-fri 08:00-20:00"',
        '  agent_timezone = "America/New_York"',
        "  agent_wait_minutes = 15",
    ]


async def test_set_changes_what_the_next_conversation_asks(app, client, paybot, phone):
    await add_account(app)
    code, out, err = await paybot(
        "set", "northwind", "name=Northwind Collections", "min_payment_cents=5000",
        "methods_enabled=card", "--by", "ops:ana",
    )
    assert (code, err) == (0, "")
    assert out == "Creditor northwind changed: name, min_payment_cents, methods_enabled.\n"
    creditor = await stored(app)
    assert (creditor.name, creditor.settings) == (
        "Northwind Collections", {"min_payment_cents": 5000, "methods_enabled": ["card"]}
    )
    async with app[appkeys.DATABASE].session() as session:
        (audited,) = await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "creditor_changed")
        )
    assert (audited.actor, audited.detail) == ("cli:ops:ana", {
        "creditor": "northwind",
        "changes": {"name": "Northwind Collections", "min_payment_cents": "5000",
                    "methods_enabled": "card"},
    })

    maria = phone()
    for text in ["pay", "ok"]:
        (reply,) = await maria.send(text)
    assert reply == (
        "How much would you like to pay? Reply an amount from $50.00 to $1,250.00, or FULL."
    )

    # KEY= puts the default back.
    code, out, _ = await paybot("set", "northwind", "min_payment_cents=")
    assert (code, out) == (0, "Creditor northwind changed: min_payment_cents.\n")
    assert (await stored(app)).settings == {"methods_enabled": ["card"]}


async def test_brand_and_support_contact_are_what_help_says(app, client, paybot, phone):
    await add_account(app)
    code, out, err = await paybot(
        "set", "northwind", "brand=Acme Card Services", "support_contact=1-800-555-0199",
        "--by", "ops:ana",
    )
    assert (code, out, err) == (
        0, "Creditor northwind changed: brand, support_contact.\n", ""
    )
    code, out, _ = await paybot("show", "northwind")
    assert out.splitlines()[:4] == [
        "northwind: Northwind Recovery, 1 account(s)",
        "brand: Acme Card Services",
        "support contact: 1-800-555-0199",
        "disclosure: This is a communication from a debt collector.",
    ]
    (reply,) = await phone().send("help")
    assert reply == (
        "Acme Card Services: texts about paying your account. Msg frequency varies. Msg & data "
        "rates may apply. Reply STOP to opt out, AGENT for a person, PLAN for your payment plan. "
        "Support: 1-800-555-0199"
    )

    # A character outside GSM-7 would turn every text into UCS-2: refused, named.
    code, out, err = await paybot("set", "northwind", "brand=Acme \u201cCard\u201d")
    assert (code, out, err) == (
        2, "", "paybot creditors: northwind: nothing changed: brand: must use only characters "
        "a text message carries plainly\n",
    )


async def test_a_bad_value_is_named_and_nothing_changes(app, client, paybot):
    await add_account(app)
    before = await stored(app)
    code, out, err = await paybot(
        "set", "northwind", "name=Renamed", "quiet_hours_start=25", "methods_enabled=cash",
        "colour=blue",
    )
    assert (code, out) == (2, "")
    assert err == (
        "paybot creditors: northwind: nothing changed: quiet_hours_start: Input should be less "
        "than or equal to 24; methods_enabled: must list one or more of card, us_bank_account, "
        "paypal, once each; colour: not a creditor setting\n"
    )
    after = await stored(app)
    assert (after.name, after.disclosure, after.settings) == (
        before.name, before.disclosure, before.settings
    )
    async with app[appkeys.DATABASE].session() as session:
        changed = select(AuditEvent).where(AuditEvent.kind == "creditor_changed")
        assert list(await session.scalars(changed)) == []


@pytest.mark.parametrize("args, error", [
    (("show", "nobody"), "paybot creditors: no creditor 'nobody'\n"),
    (("set", "nobody", "name=X"), "paybot creditors: no creditor 'nobody'\n"),
    (("set", "northwind", "name"), "paybot creditors: 'name' is not KEY=VALUE\n"),
    (("set", "northwind", "name= "), "paybot creditors: northwind: nothing changed: name: must be "
                                     "1 to 120 characters\n"),
])
async def test_what_cannot_be_done_is_said_and_exits_2(app, client, paybot, args, error):
    await add_account(app)
    code, out, err = await paybot(*args)
    assert (code, out, err) == (2, "", error)
