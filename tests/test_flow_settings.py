"""A creditor's flow settings: checked when written (the error names the key and why), and read
key by key, so one bad key (already in the database) falls back to its own default only, with a
warning naming the creditor and the key, and never voids the creditor's other settings."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select, update

from bot import appkeys
from bot.config.flow import InvalidCreditorSettings
from bot.config.settings import FlowSettings
from bot.ledger.models import Creditor
from tests.seed import add_account


async def store_unchecked(app, settings: dict) -> None:  # type: ignore[no-untyped-def]
    """What an older version (or a hand-made UPDATE) may have left in the database."""
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(
            update(Creditor).where(Creditor.code == "northwind").values(settings=settings)
        )
        await session.commit()


async def test_one_bad_stored_key_falls_back_alone_and_is_named(app, client, phone, caplog):
    await add_account(app)
    await store_unchecked(
        app, {"contact_review": False, "min_payment_cents": "lots", "furthest_schedule_days": 10}
    )
    maria = phone()
    with caplog.at_level(logging.WARNING):
        # contact_review is still off (no contact step); the bad minimum is the default $25.00.
        assert await maria.send("pay") == [
            "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
        ]
        await maria.send("$50")
        # furthest_schedule_days (10) still holds too: Nov 25 + 10 days.
        assert await maria.send("1") == [
            "Pay now or later? Reply NOW, or a date such as 12/15 (up to Dec 5, 2026)."
        ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("northwind" in w and "min_payment_cents" in w for w in warnings), warnings
    assert not any("contact_review" in w or "furthest_schedule_days" in w for w in warnings)


def test_the_stored_reading_keeps_every_good_key():
    flow = FlowSettings().merged(
        {
            "contact_review": False,
            "quiet_hours_end": 99,
            "methods_enabled": ["card", "cheque"],
            "reminder_days_before": [5],
            "no_such_setting": True,
            "decline_retry_days": 3,  # the worker's own key, read by the worker
        },
        creditor="northwind",
    )
    assert flow == FlowSettings(contact_review=False, reminder_days_before=(5,))


@pytest.mark.parametrize(
    ("stored", "named"),
    [
        ({"min_payment_cents": -5}, "min_payment_cents"),
        ({"min_payment_cents": True}, "min_payment_cents"),
        ({"allow_skip_offer": "no"}, "allow_skip_offer: Input should be a valid boolean"),
        ({"contact_reveiw": False}, "contact_reveiw: not a creditor setting"),
        ({"methods_enabled": ["card", "cheque"]}, "methods_enabled"),
        ({"methods_enabled": []}, "methods_enabled"),
        ({"quiet_hours_end": 24}, "quiet_hours_end"),
        ({"reminder_days_before": [9, 7, 3, 1]}, "reminder_days_before"),
        ({"decline_retry_days": 0}, "decline_retry_days"),
        ({"decline_max_retries": "two"}, "decline_max_retries"),
    ],
)
async def test_a_bad_setting_is_refused_when_written_naming_the_key(app, client, stored, named):
    await add_account(app)
    with pytest.raises(InvalidCreditorSettings) as refused:
        async with app[appkeys.DATABASE].session() as session:
            creditor = await session.get(Creditor, "northwind")
            creditor.settings = {"contact_review": False, **stored}  # type: ignore[union-attr]
            await session.commit()
    assert named in str(refused.value)
    assert "contact_review" not in refused.value.problems
    with pytest.raises(InvalidCreditorSettings):
        Creditor(code="acme", name="Acme", disclosure="", settings=stored)
    async with app[appkeys.DATABASE].session() as session:
        assert await session.scalar(select(Creditor.settings)) == {}


def test_every_setting_and_the_workers_keys_may_be_written():
    every = {**FlowSettings().to_mapping(), "decline_retry_days": None, "decline_max_retries": 0}
    creditor = Creditor(code="acme", name="Acme", disclosure="", settings=every)
    assert creditor.settings == every
    assert FlowSettings().merged(every, creditor="acme") == FlowSettings()
