"""The account upsert changes only the fields it is sent, never drops a contact by a null and
refuses the masked values that its own GET shows."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import Account
from tests.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
FULL: dict[str, Any] = {
    "account_id": "UPS-1", "first_name": "Zoe", "last_name": "Ng", "phone": "5555550142",
    "email": "zoe@example.com", "balance": "300.00", "ssn": "123-45-6789", "dob": "1980-02-29",
    "zip": "10001", "timezone": "America/Chicago", "creditor": "northwind",
    "description": "Acme Card ending 4821",
}
NAMES = {"account_id": "UPS-1", "first_name": "Zoe", "last_name": "Ng", "balance": "300.00"}


async def post(client, body: Any) -> tuple[int, dict[str, Any]]:  # type: ignore[no-untyped-def]
    response = await client.post("/api/v1/accounts", data=json.dumps(body), headers=AUTH)
    return response.status, await response.json()


async def stored(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        (account,) = list(await session.scalars(select(Account)))
        return {
            "phone": account.phone, "email": account.email, "ssn_last4": account.ssn_last4,
            "dob": account.dob.isoformat() if account.dob else None, "zip": account.zip_code,
            "timezone": account.timezone, "creditor": account.creditor_code,
            "description": account.description, "balance_cents": account.balance_cents,
            "first_name": account.first_name,
        }


WHOLE = {
    "phone": "+15555550142", "email": "zoe@example.com", "ssn_last4": "6789",
    "dob": "1980-02-29", "zip": "10001", "timezone": "America/Chicago", "creditor": "northwind",
    "description": "Acme Card ending 4821", "balance_cents": 30000, "first_name": "Zoe",
}


@pytest.mark.parametrize("sent", [
    {"email": "zoe@example.com"},
    {"phone": "5555550142"},
    {"email": "zoe@example.com", "balance": "250.00"},
])
async def test_an_update_keeps_every_field_it_was_not_sent(app, client, sent):
    assert (await post(client, FULL))[0] == 201
    status, document = await post(client, {**NAMES, **sent})
    assert status == 200, document
    expected = {**WHOLE, "balance_cents": 25000 if "balance" in sent and sent["balance"] ==
                "250.00" else 30000}
    assert await stored(app) == expected
    assert document["phone"] == "***-***-0142" and document["email"] == "z***@example.com"
    assert document["ssn"] == "***-**-6789" and document["timezone"] == "America/Chicago"


async def test_an_update_changes_exactly_the_fields_sent(app, client):
    assert (await post(client, FULL))[0] == 201
    status, _ = await post(client, {**NAMES, "email": "zoe.ng@example.com", "zip": "60601"})
    assert status == 200
    assert await stored(app) == {**WHOLE, "email": "zoe.ng@example.com", "zip": "60601"}


@pytest.mark.parametrize("field", ["phone", "email"])
async def test_a_null_contact_is_refused_and_deletes_nothing(app, client, field):
    assert (await post(client, FULL))[0] == 201
    status, answer = await post(client, {**FULL, field: None})
    assert status == 422
    assert answer["error"].startswith(f"{field} cannot be null"), answer
    assert await stored(app) == WHOLE


@pytest.mark.parametrize("field", ["ssn", "dob", "zip", "timezone", "creditor", "description"])
async def test_a_null_for_any_other_field_is_refused_too(app, client, field):
    assert (await post(client, FULL))[0] == 201
    status, answer = await post(client, {**FULL, field: None})
    assert status == 422
    assert answer["error"].startswith(f"{field} cannot be null"), answer
    assert await stored(app) == WHOLE


@pytest.mark.parametrize("field", ["phone", "email", "description"])
async def test_an_empty_value_is_refused_not_read_as_a_deletion(app, client, field):
    assert (await post(client, FULL))[0] == 201
    status, answer = await post(client, {**FULL, field: "  "})
    assert status == 422
    assert answer["error"].startswith(f"{field} is empty"), answer
    assert await stored(app) == WHOLE


async def test_the_masked_values_get_returns_are_refused(app, client):
    assert (await post(client, FULL))[0] == 201
    shown = await (await client.get("/api/v1/accounts/UPS-1", headers=AUTH)).json()
    assert (shown["phone"], shown["email"], shown["ssn"]) == (
        "***-***-0142", "z***@example.com", "***-**-6789")
    for field in ("email", "phone", "ssn"):
        status, answer = await post(client, {**FULL, field: shown[field]})
        assert status == 422, (field, answer)
        assert answer["error"].startswith(f"{field} is masked"), answer
        assert "6789" not in answer["error"] or field != "ssn"
    # The whole document GET returns, posted back, changes nothing either.
    echo = {name: shown[name] for name in ("account_id", "first_name", "last_name", "phone",
                                            "email", "balance", "timezone", "creditor")}
    status, answer = await post(client, echo)
    assert status == 422 and "is masked" in answer["error"]
    assert await stored(app) == WHOLE
