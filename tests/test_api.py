"""The operators' REST API: bearer key, upsert, masked account documents, OpenAPI, bad input."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import select

from bot import api, appkeys
from bot.app import create_app
from bot.ledger.models import Account, AuditEvent, Payment
from tests.conftest import API_KEY
from tests.seed import add_account

AUTH = {"Authorization": f"Bearer {API_KEY}"}
MARIA: dict[str, Any] = {
    "account_id": "API-1", "first_name": "Maria", "last_name": "Lopez",
    "phone": "(555) 555-0142", "email": "Maria.Lopez@Example.com", "balance": "1,250.00",
    "ssn": "123-45-6789", "dob": "1980-02-29", "zip": "10001", "timezone": "America/Chicago",
    "creditor": "northwind", "description": "Acme Card ending 4821",
}


async def post(client, body: Any, *, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post("/api/v1/accounts", data=data,
                                 headers={**AUTH, "Content-Type": "application/json",
                                          **(headers or {})})
    return response.status, await response.json()


async def accounts(app) -> list[Account]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(Account).order_by(Account.id)))


# --- the key ---

async def test_the_api_needs_the_bearer_key(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY},
                    {"Authorization": f"Basic {API_KEY}"}, {"Authorization": "Bearer"}):
        response = await client.get("/api/v1/accounts/ACC-1001", headers=headers)
        assert response.status == 401, headers
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "bearer API key" in (await response.json())["error"]
    response = await client.post("/api/v1/accounts", json=MARIA)
    assert response.status == 401
    # The scheme is case-insensitive (RFC 9110); the key is not.
    response = await client.get("/api/v1/accounts/ACC-1001",
                                headers={"Authorization": f"bearer {API_KEY}"})
    assert response.status == 404
    response = await client.get("/api/v1/accounts/ACC-1001",
                                headers={"Authorization": f"Bearer {API_KEY.upper()}"})
    assert response.status == 401


async def test_without_a_configured_key_the_api_is_off(settings, providers, clock, aiohttp_client):
    client = await aiohttp_client(create_app(settings.replace(api_key=None), providers, clock))
    response = await client.get("/api/v1/accounts/ACC-1001", headers=AUTH)
    assert response.status == 503
    assert "PAYBOT_API_KEY" in (await response.json())["error"]
    assert (await client.get("/api/v1/openapi.json")).status == 200


# --- upsert and read back ---

async def test_upsert_creates_then_updates_and_masks_contacts(app, client):
    status, created = await post(client, MARIA)
    assert status == 201
    assert created["account_id"] == "API-1"
    assert created["balance_cents"] == 125000 and created["balance"] == "1250.00"
    assert created["phone"] == "***-***-0142"
    assert created["email"] == "m***@example.com"
    assert created["ssn"] == "***-**-6789"
    assert created["timezone"] == "America/Chicago" and created["creditor"] == "northwind"
    assert "payments" not in created

    status, updated = await post(client, {**MARIA, "account_id": "api-1", "balance": "99.5"})
    assert status == 200  # the same account: account_id matches whatever the case
    assert updated["account_id"] == "API-1" and updated["balance_cents"] == 9950

    response = await client.get("/api/v1/accounts/API-1", headers=AUTH)
    assert response.status == 200
    document = await response.json()
    assert document["balance"] == "99.50" and document["payments"] == []
    text = await response.text()
    for secret in ("5550142", "555-0142", "maria.lopez", "123-45-6789", "123456789"):
        assert secret not in text.lower()

    (account,) = await accounts(app)
    assert account.phone == "+15555550142" and account.email == "maria.lopez@example.com"
    assert account.ssn_last4 == "6789" and account.ssn_hash and "123456789" not in account.ssn_hash
    assert account.dob == date(1980, 2, 29)


async def test_posting_the_same_body_again_changes_nothing(app, client):
    assert (await post(client, MARIA))[0] == 201
    (before,) = await accounts(app)
    app[appkeys.CLOCK].advance(__import__("datetime").timedelta(hours=1))
    assert (await post(client, MARIA))[0] == 200
    (after,) = await accounts(app)
    assert after.updated_at == before.updated_at  # nothing changed, nothing written
    async with app[appkeys.DATABASE].session() as session:
        kinds = list(await session.scalars(select(AuditEvent.kind).order_by(AuditEvent.id)))
    assert kinds == ["account_created"]


async def test_two_requests_creating_the_same_account_at_once(app, client):
    (s1, _), (s2, _) = await asyncio.gather(post(client, MARIA), post(client, MARIA))
    assert sorted([s1, s2]) == [200, 201]
    assert len(await accounts(app)) == 1


async def test_get_shows_payments_with_their_status(app, client):
    account = await add_account(app, ssn="123-45-6789")
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        for n, (status, day) in enumerate(
            [("paid", date(2026, 11, 25)), ("pending", date(2026, 11, 26)),
             ("declined", date(2026, 11, 27)), ("scheduled", date(2026, 12, 15))], start=1):
            session.add(Payment(reference=f"P-TEST{n}", idempotency_key=f"test-{n}",
                                account_id=account.id, method_id=None, amount_cents=5000 * n,
                                scheduled_for=day, status=status, created_at=now, updated_at=now))
        await session.commit()
    response = await client.get("/api/v1/accounts/acc-1001", headers=AUTH)
    assert response.status == 200
    document = await response.json()
    assert document["balance"] == "1250.00" and document["phone"] == "***-***-0100"
    assert [(p["reference"], p["status"], p["amount"]) for p in document["payments"]] == [
        ("P-TEST1", "Paid", "50.00"), ("P-TEST2", "Pending", "100.00"),
        ("P-TEST3", "Declined", "150.00"), ("P-TEST4", "Scheduled", "200.00"),
    ]
    assert "maria@example.com" not in await response.text()


@pytest.mark.parametrize("ref", ["NOPE-1", "x' OR '1'='1", "%00", "a" * 300, "%F0%9F%98%80",
                                 "ACC-1001;DROP TABLE accounts"])
async def test_unknown_or_odd_account_ids_are_404(app, client, ref):
    await add_account(app)
    response = await client.get(f"/api/v1/accounts/{ref}", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["error"] == "no account with that account_id"
    assert len(await accounts(app)) == 1


# --- bad input: a clear 4xx, never a 500 ---

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"account_id": None}, "account_id is missing"),
    ({"account_id": ""}, "account_id is missing"),
    ({"account_id": "ACC 1"}, "account_id is missing or has characters"),
    ({"account_id": "x'; DROP TABLE accounts; --"}, "account_id is missing or has characters"),
    ({"account_id": 1001}, "account_id must be text"),
    ({"first_name": None}, "first_name and last_name are required"),
    ({"last_name": "   "}, "first_name and last_name are required"),
    ({"first_name": ["Maria"]}, "first_name must be text"),
    ({"first_name": {"x": 1}}, "first_name must be text"),
    ({"first_name": True}, "first_name must be text"),
    ({"first_name": "M" * 81}, "first_name is longer than 80 characters"),
    ({"first_name": "Ma\u0000ria"}, "first_name contains a control character"),
    ({"last_name": "Lo\u0007pez"}, "last_name contains a control character"),
    ({"last_name": "\ud800"}, "last_name contains a control character"),
    ({"phone": "12345"}, "phone '12345' is not a phone number"),
    ({"phone": 5555550142}, "phone must be text"),
    ({"phone": "123-45-6789"}, "phone '***-**-****' is not a phone number"),
    ({"email": "maria at example"}, "email 'maria at example' is not an email address"),
    ({"phone": None, "email": None}, "phone cannot be null"),
    ({"balance": None}, "balance is required"),
    ({"balance": ""}, "balance is required"),
    ({"balance": [12.5]}, "balance must be an amount in dollars"),
    ({"balance": {"amount": 1}}, "balance must be an amount in dollars"),
    ({"balance": True}, "balance must be an amount in dollars"),
    ({"balance": "-5.00"}, "balance cannot be negative"),
    ({"balance": -5}, "balance cannot be negative"),
    ({"balance": "12.345"}, "balance '12.345' is not an amount in dollars"),
    ({"balance": "12,50"}, "balance '12,50' is not an amount in dollars"),
    ({"balance": "1e50"}, "balance '1e50' is not an amount in dollars"),
    ({"balance": "fifty"}, "balance 'fifty' is not an amount in dollars"),
    ({"balance": "NaN"}, "balance 'NaN' is not an amount in dollars"),
    ({"balance": "\uff15\uff10"}, "balance '\uff15\uff10' is not an amount in dollars"),
    ({"balance": "Infinity"}, "balance 'Infinity' is not an amount in dollars"),
    ({"balance": 1e300}, "balance is not an amount in dollars"),
    ({"balance": "9" * 31}, "balance is not an amount in dollars"),
    ({"balance": "200000000.00"}, "balance is implausibly large"),
    ({"ssn": "12345"}, "ssn must have 9 digits"),
    ({"ssn": "123-45-678X"}, "ssn must have 9 digits"),
    ({"ssn": 123456789}, "ssn must be text"),
    ({"dob": "02/30/1980"}, "dob '02/30/1980' is not a date of birth"),
    ({"dob": "2099-01-01"}, "dob '2099-01-01' is not a date of birth"),
    ({"dob": "123-45-6789"}, "dob '***-**-****' is not a date of birth"),
    ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a time zone"),
    ({"timezone": "America"}, "timezone 'America' is not a time zone"),
    ({"timezone": "../../etc/passwd"}, "timezone '../../etc/passwd' is not a time zone"),
    ({"zip": "1000"}, "zip '1000' is not a ZIP code"),
    ({"language": "fr"}, "language 'fr' is not en or es"),
    ({"language": 2}, "language must be text"),
    ({"creditor": "c" * 41}, "creditor is longer than 40 characters"),
    ({"description": "d" * 121}, "description is longer than 120 characters"),
    ({"balance_cents": 125000}, "unknown field(s): balance_cents"),
    ({"phone_number": "5555550142", "notes": "x"}, "unknown field(s): notes, phone_number"),
]


@pytest.mark.parametrize(("change", "message"), INVALID,
                         ids=[str(i) for i in range(len(INVALID))])
async def test_invalid_accounts_get_422_with_the_reason(app, client, change, message):
    status, body = await post(client, {**MARIA, **change})
    assert status == 422, body
    assert body["error"].startswith(message), body
    assert "123-45-6789" not in body["error"] and "123456789" not in body["error"]
    assert await accounts(app) == []


async def test_numbers_emoji_other_scripts_and_injection_text_are_kept_as_given(app, client):
    body = {**MARIA, "balance": "12.5", "first_name": "Zoë 😀", "last_name": "Ŀópez-Ng'uyen",
            "description": "Robert'); DROP TABLE accounts;--", "creditor": "北风",
            "timezone": "pacific"}
    del body["phone"]
    status, document = await post(client, body)
    assert status == 201, document
    assert document["balance_cents"] == 1250
    assert document["first_name"] == "Zoë 😀" and document["creditor"] == "北风"
    assert document["timezone"] == "America/Los_Angeles"
    assert document["phone"] is None
    # A JSON number is whole dollars, read exactly (never as a float); cents go as text.
    status, document = await post(client, {**MARIA, "account_id": "API-2", "balance": 0.1})
    assert (status, document["error"]) == (
        422, 'balance as a JSON number is whole dollars: send cents as text, e.g. "12.50"')
    status, document = await post(client, {**MARIA, "account_id": "API-2", "balance": 7.0})
    assert (status, document["balance_cents"]) == (201, 700)
    status, document = await post(client, {**MARIA, "account_id": "API-3", "balance": 1250})
    assert (status, document["balance_cents"]) == (201, 125000)
    stored = await accounts(app)
    assert stored[0].description == "Robert'); DROP TABLE accounts;--"
    assert len(stored) == 3


@pytest.mark.parametrize("body", [
    b"", b"not json", b"{", b"[1, 2]", b'"a string"', b"42", b"null", b"true",
    b'{"balance": NaN}', b"\xff\xfe{}", b'{"a": "\xe9"}', b"[" * 20000 + b"]" * 20000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
])
async def test_bodies_that_are_not_a_json_object_get_400(app, client, body):
    status, answer = await post(client, body)
    assert status == 400
    assert "JSON object" in answer["error"]
    assert await accounts(app) == []


async def test_a_huge_body_is_413_not_500(app, client):
    status, answer = await post(client, {**MARIA, "description": "x" * 200_000})
    assert status == 413
    assert "larger than" in answer["error"]
    assert await accounts(app) == []


async def test_wrong_methods_and_paths_answer_json(client):
    response = await client.delete("/api/v1/accounts/ACC-1001", headers=AUTH)
    assert response.status == 405 and "error" in await response.json()
    response = await client.get("/api/v1/nothing-here", headers=AUTH)
    assert response.status == 404 and "error" in await response.json()


async def test_hand_back_refuses_odd_numbers(client):
    for raw in ("not-a-phone", "1" * 200):
        response = await client.post(f"/api/v1/conversations/{raw}/handback", headers=AUTH)
        assert response.status == 400
    response = await client.post("/api/v1/conversations/+15555550199/handback", headers=AUTH)
    assert response.status == 404


# --- OpenAPI ---

async def test_openapi_is_public_and_describes_the_routes(client):
    response = await client.get("/api/v1/openapi.json")  # no key
    assert response.status == 200
    assert response.content_type == "application/json"
    spec = await response.json()
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["servers"] == [{"url": "/api/v1"}]
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}

    # Every route the router serves is documented, with its method, and nothing else is.
    routes: dict[str, set[str]] = {}
    for route in api.create_app().router.routes():
        if route.method != "HEAD":
            routes.setdefault(route.resource.canonical, set()).add(route.method.lower())
    assert {path: set(ops) for path, ops in spec["paths"].items()} == routes

    operation_ids = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            operation_ids.append(operation["operationId"])
            assert operation["responses"], (path, method)
            for code, answer in operation["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", code) and answer["description"]
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
            if path == "/openapi.json":
                assert operation["security"] == []
            else:
                assert "401" in operation["responses"]
    assert len(operation_ids) == len(set(operation_ids))

    # Every $ref points at something that exists.
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            return ([node["$ref"]] if "$ref" in node else []) + [
                r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for value in node for r in refs(value)]
        return []

    for ref in refs(spec):
        target: Any = spec
        assert ref.startswith("#/")
        for part in ref[2:].split("/"):
            target = target[part]

    # The input schema names exactly the fields the API accepts.
    schema = spec["components"]["schemas"]["AccountInput"]
    assert set(schema["properties"]) == set(api.FIELDS)
    assert set(schema["required"]) <= set(schema["properties"])
    assert schema["additionalProperties"] is False


async def test_the_documented_account_matches_what_get_returns(app, client):
    await add_account(app)
    document = await (await client.get("/api/v1/accounts/ACC-1001", headers=AUTH)).json()
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert set(document) == set(spec["components"]["schemas"]["Account"]["properties"])


async def test_every_body_and_every_answer_is_declared(client):
    spec = await (await client.get("/api/v1/openapi.json")).json()
    takes_body = {"upsertAccount", "createLink", "cancelPlan", "createOffer", "withdrawOffer"}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            answers = operation["responses"]
            if operation["operationId"] in takes_body:
                body = operation["requestBody"]["content"]["application/json"]["schema"]
                assert body["$ref"].startswith("#/components/schemas/"), path
                assert {"400", "413"} <= set(answers), path
            if path != "/openapi.json":
                assert {"401", "503"} <= set(answers), path
            for code, answer in answers.items():
                if code.startswith(("4", "5")):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"}, (path, code)


# What fuzzing found the document accepting and the server refusing: now both refuse, or
# both accept.
AGREE = [
    ("/api/v1/accounts/ACC-1001/links", {"amount": ""}, 422),
    ("/api/v1/accounts/ACC-1001/links", {"amount": "50.00", "due_on": "0000-01-01"}, 422),
    ("/api/v1/accounts/ACC-1001/links", {"amount": "50.00", "due_on": "2026-12-20"}, 201),
    ("/api/v1/offers/1/withdraw", {"actor": ""}, 422),
    ("/api/v1/offers/1/withdraw", {"actor": "agent:jsmith"}, 404),
    ("/api/v1/plans/1/cancel", {"reason": "a\u001db"}, 400),
    ("/api/v1/conversations/0/handback", None, 400),
]


@pytest.mark.parametrize(("path", "body", "status"), AGREE)
async def test_the_document_forbids_what_the_server_refuses(app, client, path, body, status):
    import jsonschema

    await add_account(app)
    spec = await (await client.get("/api/v1/openapi.json")).json()
    route = path.removeprefix("/api/v1")
    (template, operation), = [
        (t, ops["post"]) for t, ops in spec["paths"].items()
        if "post" in ops and re.fullmatch(re.sub(r"{\w+}", "[^/]+", t), route)]
    valid = True
    for parameter, value in zip(re.findall(r"{(\w+)}", template),
                                re.fullmatch(re.sub(r"{\w+}", "([^/]+)", template), route).groups(),
                                strict=True):
        (declared,) = [p for p in operation["parameters"] if p["name"] == parameter]
        schema = declared["schema"]
        if schema["type"] == "integer":
            valid &= value.isdigit()
        else:
            valid &= jsonschema.Draft202012Validator(schema).is_valid(value)
    if body is not None:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        valid &= jsonschema.Draft202012Validator(schema, format_checker=checker).is_valid(body)
    response = await client.post(path, json=body, headers=AUTH) if body is not None else \
        await client.post(path, headers=AUTH)
    assert response.status == status, await response.text()
    assert valid == (status < 400 or status == 404)


@pytest.mark.parametrize("raw", ["57061317694", "2147483648", "99999999999", "²", "١٢"])
async def test_ids_beyond_the_database_integer_are_404_not_500(app, client, raw):
    for method, path in (("get", f"/api/v1/offers/{raw}"),
                         ("post", f"/api/v1/offers/{raw}/withdraw"),
                         ("post", f"/api/v1/plans/{raw}/cancel")):
        response = await client.request(method, path, headers=AUTH)
        assert response.status == 404, (path, await response.text())
        assert (await response.json())["error"].startswith("no ")


@pytest.mark.parametrize("suffix", ["0", "\n"])
async def test_an_account_id_longer_than_any_is_not_cut_to_one_that_exists(app, client, suffix):
    """Found by schemathesis: 65 zeros reached the account named by 64 of them."""
    await add_account(app, ref="0" * 64)
    path = f"/api/v1/accounts/{'0' * 64}{quote(suffix)}"
    for method, url, body in (("post", f"{path}/links", {}), ("get", path, None),
                              ("get", f"{path}/offers", None)):
        response = await client.request(method, url, json=body, headers=AUTH)
        assert (response.status, (await response.json())["error"]) == (
            404, "no account with that account_id"), url


@pytest.mark.parametrize("body", [
    {"amount": 107696538543871665980972204032, "due_on": "2676-05-08",
     "allow_amount_change": False, "fee": 65566403614911},
    {"amount": "50.00", "fee": 65566403614911},
    {"amount": "50.00", "fee": "9" * 40},
])
async def test_links_with_huge_figures_are_422_not_500(app, client, body):
    await add_account(app)
    response = await client.post("/api/v1/accounts/ACC-1001/links", json=body, headers=AUTH)
    assert response.status == 422, await response.text()


async def test_the_language_field_is_kept_and_shown(app, client):
    status, document = await post(client, {**MARIA, "language": "es"})
    assert status == 201, document
    assert document["language"] == "es"
    # Left out, it keeps what is stored.
    status, document = await post(client, MARIA)
    assert (status, document["language"]) == (200, "es")
    status, document = await post(client, {**MARIA, "account_id": "API-EN"})
    assert (status, document["language"]) == (201, "en")
