"""Offers through the REST API: make a plan or settlement offer, read it back, withdraw it; the
account document shows its plans. Bad input gets 422 naming the field and writes nothing."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import appkeys
from bot.ledger.models import AuditEvent, Link, Offer, Outreach, PaymentMethod
from bot.plans import signing as plans
from tests.conftest import API_KEY, START
from tests.seed import add_account

AUTH = {"Authorization": f"Bearer {API_KEY}"}
PLAN: dict[str, Any] = {"kind": "plan", "frequency": "monthly", "count": 6,
                        "start_date": "2026-12-15"}


async def post_offer(client, body: Any, ref: str = "ACC-1001"):  # type: ignore[no-untyped-def]
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    response = await client.post(f"/api/v1/accounts/{ref}/offers", data=data,
                                 headers={**AUTH, "Content-Type": "application/json"})
    return response.status, await response.json()


async def stored(app) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return (await session.scalar(select(func.count()).select_from(Offer)) or 0,
                await session.scalar(select(func.count()).select_from(Outreach)) or 0)


async def test_a_plan_offer_is_made_with_its_exact_schedule(app, client):
    await add_account(app)
    status, offer = await post_offer(client, {**PLAN, "send_via": "both",
                                              "created_by": "agent:jsmith"})
    assert status == 201, offer
    assert offer["kind"] == "plan" and offer["status"] == "open"
    assert offer["account_id"] == "ACC-1001" and offer["created_by"] == "agent:jsmith"
    assert offer["total"] == "1250.00" and offer["installment_count"] == 6
    assert [(i["date"], i["amount"]) for i in offer["schedule"]] == [
        ("2026-12-15", "208.34"), ("2027-01-15", "208.34"), ("2027-02-15", "208.34"),
        ("2027-03-15", "208.34"), ("2027-04-15", "208.34"), ("2027-05-15", "208.30")]
    assert sum(i["amount_cents"] for i in offer["schedule"]) == 125000
    assert offer["expires_at"] == "2026-12-10T04:59:59+00:00"  # Dec 9, end of day in New York
    assert offer["rules"] == {"skips_allowed": 1, "move_max_days": 14}
    assert offer["plan_id"] is None and offer["sent_at"] is None
    async with app[appkeys.DATABASE].session() as session:
        (queued,) = await session.scalars(select(Outreach))
    assert (queued.kind, queued.channel, queued.offer_id) == ("offer", "both", offer["id"])

    response = await client.get(f"/api/v1/offers/{offer['id']}", headers=AUTH)
    assert response.status == 200 and await response.json() == offer


async def test_amounts_custom_schedules_and_expiry_as_given(app, client):
    await add_account(app)
    status, offer = await post_offer(client, {
        "kind": "plan", "frequency": "biweekly", "start_date": "2026-11-27",
        "installment_amount": "100", "total": "$450.00", "expires_in_days": 1})
    assert status == 201, offer
    assert [(i["date"], i["amount"]) for i in offer["schedule"]] == [
        ("2026-11-27", "100.00"), ("2026-12-11", "100.00"), ("2026-12-25", "100.00"),
        ("2027-01-08", "100.00"), ("2027-01-22", "50.00")]
    assert offer["expires_at"] == "2026-11-27T04:59:59+00:00"
    status, offer = await post_offer(client, {
        "kind": "plan", "schedule": [{"date": "2026-11-30", "amount": "50.00"},
                                     ["2026-12-31", 1200]],
        "expires_at": "2026-11-28T12:00:00-05:00", "rules": {"skips_allowed": 0}})
    assert status == 201, offer
    assert offer["frequency"] is None and offer["total"] == "1250.00"
    assert [i["amount"] for i in offer["schedule"]] == ["50.00", "1200.00"]
    assert offer["expires_at"] == "2026-11-28T17:00:00+00:00"
    assert offer["rules"] == {"skips_allowed": 0, "move_max_days": 14}
    assert await stored(app) == (2, 0)


async def test_settlements_by_amount_and_by_percentage(app, client):
    await add_account(app)
    status, offer = await post_offer(client, {"kind": "settlement", "settlement_amount": "800"})
    assert status == 201, offer
    assert (offer["total"], offer["savings"], offer["discount_bps"]) == ("800.00", "450.00", None)
    assert offer["schedule"] == [] and offer["installment_count"] == 1
    status, offer = await post_offer(client, {"kind": "settlement", "percent_off": 36,
                                              "expires_at": "2026-12-31"})
    assert status == 201, offer
    assert (offer["total"], offer["discount_bps"]) == ("800.00", 3600)
    assert offer["expires_at"] == "2027-01-01T04:59:59+00:00"
    status, offer = await post_offer(client, {"kind": "settlement", "percent_off": "12.5"})
    assert (status, offer["total"]) == (201, "1093.75")
    # A JSON number is a whole percentage: its fraction could not be read exactly everywhere.
    status, offer = await post_offer(client, {"kind": "settlement", "percent_off": 12.5})
    assert (status, offer["error"]) == (422, "percent_off is not valid here: see its schema in "
                                             "/api/v1/openapi.json")

    response = await client.get("/api/v1/accounts/acc-1001/offers", headers=AUTH)
    listing = await response.json()
    assert response.status == 200 and listing["account_id"] == "ACC-1001"
    assert [o["total"] for o in listing["offers"]] == ["800.00", "800.00", "1093.75"]


INVALID: list[tuple[Any, str]] = [
    ({}, "kind: must be plan or settlement"),
    ({"kind": "loan"}, "kind: must be plan or settlement"),
    ({**PLAN, "start_date": "2026-11-24"}, "start_date: must not be in the past"),
    ({**PLAN, "start_date": "2027-01-15"}, "start_date: the first installment must be within 30"),
    ({**PLAN, "start_date": "12/15/2026"}, "start_date: must be a date, YYYY-MM-DD"),
    ({**PLAN, "start_date": 20261215}, "start_date: must be a date"),
    ({**PLAN, "count": 25}, "count: must be at most 24"),
    ({**PLAN, "count": "6"}, "count: must be a whole number"),
    ({**PLAN, "count": True}, "count: must be a whole number"),
    ({**PLAN, "count": 10**30}, "count: must be a whole number"),
    ({**PLAN, "frequency": "fortnightly"}, "frequency: must be weekly, biweekly or monthly"),
    ({**PLAN, "total": "1250.001"}, "total: must be an amount in dollars"),
    ({**PLAN, "total": "1e5"}, "total: must be an amount in dollars"),
    ({**PLAN, "total": [1]}, "total: must be an amount in dollars"),
    ({**PLAN, "total": "1" + "0" * 40}, "total: must be an amount in dollars"),
    ({**PLAN, "total": 10**400}, "total: must be an amount in dollars"),
    ({"kind": "settlement", "percent_off": "1e999999999"}, "percent_off: must be more than 0"),
    ({**PLAN, "total": "2000.00"}, "total: must not be more than the balance ($1,250.00)"),
    ({**PLAN, "count": 60, "total": "100.00"}, "count: must be at most 24"),
    ({**PLAN, "count": 10, "total": "100.00"}, "installment_amount: installment 1 is below"),
    ({**PLAN, "installment_amount": "10.00"}, "installment_amount: 6 installments of $10.00"),
    ({**PLAN, "expires_in_days": 30}, "expires_at: must not be after the first installment"),
    ({**PLAN, "expires_at": "2026-12-01T10:00:00"}, "expires_at: needs a UTC offset"),
    ({**PLAN, "expires_at": "soon"}, "expires_at: must be a date"),
    ({**PLAN, "expires_at": "9999-12-31"}, "expires_at: must be a day within 365 days"),
    ({**PLAN, "expires_at": "2026-11-24"}, "expires_at: must be a day within 365 days"),
    ({**PLAN, "expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at: must be within 365"),
    ({**PLAN, "expires_at": "9999-12-31T23:59:59-05:00"}, "expires_at: must be within 365"),
    ({**PLAN, "start_date": "9999-12-31"}, "start_date: the first installment must be within"),
    ({**PLAN, "start_date": "0001-01-01"}, "start_date: must not be in the past"),
    ({"kind": "plan", "schedule": [["9999-12-31", "50"]]}, "schedule: the first installment"),
    ({**PLAN, "send_via": "fax"}, "send_via: must be sms, email or both"),
    ({**PLAN, "created_by": "x" * 41}, "created_by: must be a short name"),
    ({**PLAN, "created_by": "agent:\u0000x"}, "created_by: must be a short name"),
    ({**PLAN, "created_by": "agent\njsmith"}, "created_by: must be a short name"),
    ({**PLAN, "rules": [1]}, "rules: must be an object"),
    ({**PLAN, "rules": {"skips_allowed": "1"}}, "rules: skips_allowed must be a whole number"),
    ({**PLAN, "installments": 6}, "body: unknown field(s): installments"),
    ({"kind": "plan", "schedule": "monthly"}, "schedule: must be a list"),
    ({"kind": "plan", "schedule": [{"date": "2026-12-01"}]}, "schedule: each installment is"),
    ({"kind": "plan", "schedule": [["2026-12-01", "-5.00"]]}, "schedule: installment 1"),
    ({"kind": "plan", "schedule": [["2026-12-09", "50"], ["2026-12-01", "50"]]},
     "schedule: dates must be in order"),
    ({"kind": "plan", "schedule": [["2026-12-09", "50"]], "frequency": "weekly"},
     "schedule: give either a schedule or a frequency"),
    ({"kind": "settlement", "settlement_amount": "1250.00"},
     "settlement_amount: must be less than the balance ($1,250.00)"),
    ({"kind": "settlement", "settlement_amount": "0"}, "settlement_amount: must be more than 0"),
    ({"kind": "settlement", "percent_off": 100}, "percent_off: must be more than 0 and less"),
    ({"kind": "settlement", "percent_off": "a lot"}, "percent_off: must be a number"),
    ({"kind": "settlement", "percent_off": True}, "percent_off: must be a number"),
    ({"kind": "settlement", "percent_off": 10, "settlement_amount": "5"},
     "settlement_amount: give either"),
    ({"kind": "settlement", "settlement_amount": "800", "count": 2}, "kind: a settlement has"),
    ({"kind": "settlement", "settlement_amount": "800", "created_by": "😀" * 50},
     "created_by: must be a short name"),
]


@pytest.mark.parametrize(("body", "reason"), INVALID, ids=[str(n) for n in range(len(INVALID))])
async def test_invalid_offers_get_422_naming_the_field_and_write_nothing(app, client, body,
                                                                          reason):
    await add_account(app)
    status, answer = await post_offer(client, body)
    assert status == 422, answer
    assert answer["error"].startswith(reason), answer
    assert await stored(app) == (0, 0)


@pytest.mark.parametrize("body", [b"", b"[]", b"not json", b"\xff", b'{"kind": NaN}'])
async def test_bodies_that_are_not_a_json_object_get_400(app, client, body):
    await add_account(app)
    status, answer = await post_offer(client, body)
    assert status == 400 and "JSON object" in answer["error"]
    assert await stored(app) == (0, 0)


async def test_unknown_accounts_and_offers_are_404(app, client):
    await add_account(app)
    for ref in ("NOPE-1", "x' OR '1'='1", "%F0%9F%98%80"):
        status, answer = await post_offer(client, {"kind": "settlement", "percent_off": 10}, ref)
        assert (status, answer["error"]) == (404, "no account with that account_id")
        response = await client.get(f"/api/v1/accounts/{ref}/offers", headers=AUTH)
        assert response.status == 404
    for raw in ("999", "abc", "1" * 40, "-1"):
        assert (await client.get(f"/api/v1/offers/{raw}", headers=AUTH)).status == 404
        response = await client.post(f"/api/v1/offers/{raw}/withdraw", headers=AUTH)
        assert response.status == 404
    assert await stored(app) == (0, 0)


async def test_the_offer_routes_need_the_key(app, client):
    await add_account(app)
    _, offer = await post_offer(client, {"kind": "settlement", "percent_off": 10})
    for method, path in (("POST", "/api/v1/accounts/ACC-1001/offers"),
                         ("GET", "/api/v1/accounts/ACC-1001/offers"),
                         ("GET", f"/api/v1/offers/{offer['id']}"),
                         ("POST", f"/api/v1/offers/{offer['id']}/withdraw")):
        response = await client.request(method, path, json={"kind": "settlement",
                                                            "percent_off": 10},
                                        headers={"Authorization": "Bearer wrong"})
        assert response.status == 401, path
    assert await stored(app) == (1, 0)


async def test_withdrawing_an_offer(app, client):
    account = await add_account(app)
    _, offer = await post_offer(client, {**PLAN, "send_via": "sms"})
    async with app[appkeys.DATABASE].session() as session:
        session.add(Link(token_sha256="a" * 64, account_id=account.id, offer_id=offer["id"],
                         purpose="plan_offer", expires_at=START + timedelta(days=3),
                         created_at=START))
        await session.commit()
    response = await client.post(f"/api/v1/offers/{offer['id']}/withdraw",
                                 json={"actor": "agent:jsmith"}, headers=AUTH)
    assert response.status == 200
    assert (await response.json())["status"] == "withdrawn"
    async with app[appkeys.DATABASE].session() as session:
        link = await session.scalar(select(Link))
    assert link is not None and link.revoked_at == START
    response = await client.post(f"/api/v1/offers/{offer['id']}/withdraw", headers=AUTH)
    assert response.status == 409
    assert (await response.json())["error"] == "The offer is already withdrawn."
    for actor in ("", "agent:\u0000x", 42):
        response = await client.post(f"/api/v1/offers/{offer['id']}/withdraw",
                                     json={"actor": actor}, headers=AUTH)
        assert response.status == 422


async def test_an_expired_offer_reads_expired(app, client):
    await add_account(app)
    _, offer = await post_offer(client, {"kind": "settlement", "percent_off": 10,
                                         "expires_in_days": 1})
    app[appkeys.CLOCK].advance(timedelta(days=2))
    document = await (await client.get(f"/api/v1/offers/{offer['id']}", headers=AUTH)).json()
    assert document["status"] == "expired"


async def sign(app, offer_id: int) -> plans.Plan:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.get(Offer, offer_id)
        method = await session.scalar(select(PaymentMethod))
        account = await session.get(plans.Account, offer.account_id)
        return await plans.accept_plan_offer(
            session, offer=offer, account=account, method=method,
            signature=plans.Signature(kind="typed", data="Maria Lopez", signer_name="Maria Lopez",
                                      channel="web", esign_consent_at=START),
            agreement_text="terms", terms_version="2026-11", at=START)


async def test_the_account_shows_its_plans_with_installment_statuses(app, client):
    await add_account(app)
    _, offer = await post_offer(client, {**PLAN, "count": 3, "total": "300.00"})
    plan = await sign(app, offer["id"])
    document = await (await client.get(f"/api/v1/offers/{offer['id']}", headers=AUTH)).json()
    assert (document["status"], document["plan_id"]) == ("accepted", plan.id)
    response = await client.get(f"/api/v1/offers/{offer['id']}/withdraw", headers=AUTH)
    assert response.status == 405
    response = await client.post(f"/api/v1/offers/{offer['id']}/withdraw", headers=AUTH)
    assert response.status == 409
    assert "cancel the plan instead" in (await response.json())["error"]

    account = await (await client.get("/api/v1/accounts/ACC-1001", headers=AUTH)).json()
    (shown,) = account["plans"]
    assert (shown["id"], shown["offer_id"], shown["status"], shown["total"]) == (
        plan.id, offer["id"], "active", "300.00")
    assert [(i["number"], i["scheduled_for"], i["amount"], i["status"])
            for i in shown["installments"]] == [
        (1, "2026-12-15", "100.00", "Scheduled"), (2, "2027-01-15", "100.00", "Scheduled"),
        (3, "2027-02-15", "100.00", "Scheduled")]

    for refused in ({"reason": "a\u0000b"}, {"actor": "agent:\u0000x"}, {"reason": 5}):
        response = await client.post(f"/api/v1/plans/{plan.id}/cancel", headers=AUTH,
                                     json=refused)
        assert response.status == 400, refused
    response = await client.post(f"/api/v1/plans/{plan.id}/cancel", headers=AUTH,
                                 json={"actor": "agent:jsmith", "reason": "asked to"})
    assert response.status == 200
    account = await (await client.get("/api/v1/accounts/ACC-1001", headers=AUTH)).json()
    (shown,) = account["plans"]
    assert shown["status"] == "canceled" and shown["canceled_at"] == START.isoformat()
    assert {i["status"] for i in shown["installments"]} == {"Canceled"}


async def test_the_openapi_document_describes_the_offer_routes(client):
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert set(spec["paths"]["/accounts/{account_id}/offers"]) == {"get", "post"}
    assert set(spec["paths"]["/offers/{offer_id}"]) == {"get"}
    assert set(spec["paths"]["/offers/{offer_id}/withdraw"]) == {"post"}
    from bot.api import OFFER_FIELDS

    assert set(spec["components"]["schemas"]["OfferInput"]["properties"]) == set(OFFER_FIELDS)


async def test_the_documented_offer_matches_what_the_api_returns(app, client):
    await add_account(app)
    _, offer = await post_offer(client, PLAN)
    spec = await (await client.get("/api/v1/openapi.json")).json()
    assert set(offer) == set(spec["components"]["schemas"]["Offer"]["properties"])
    plan = await sign(app, offer["id"])
    account = await (await client.get("/api/v1/accounts/ACC-1001", headers=AUTH)).json()
    (shown,) = account["plans"]
    assert shown["id"] == plan.id
    assert set(shown) == set(spec["components"]["schemas"]["Plan"]["properties"])


async def test_two_withdrawals_at_once_withdraw_once(app, client):
    await add_account(app)
    _, offer = await post_offer(client, PLAN)
    responses = await asyncio.gather(*(
        client.post(f"/api/v1/offers/{offer['id']}/withdraw", headers=AUTH) for _ in range(2)))
    assert sorted(r.status for r in responses) == [200, 409]
    async with app[appkeys.DATABASE].session() as session:
        withdrawals = await session.scalar(
            select(func.count()).select_from(AuditEvent).where(
                AuditEvent.kind == "offer_withdrawn"))
    assert withdrawals == 1


async def deliver(app):  # type: ignore[no-untyped-def]
    from bot.outreach.queue import deliver_due

    providers = app[appkeys.PROVIDERS]
    return await deliver_due(database=app[appkeys.DATABASE], settings=app[appkeys.SETTINGS],
                             clock=app[appkeys.CLOCK], sms=providers.sms,
                             email=providers.email)


async def test_an_offer_sent_by_api_reaches_the_customer_with_its_link(app, client, providers):
    await add_account(app)
    _, offer = await post_offer(client, {**PLAN, "send_via": "sms"})
    await deliver(app)
    (text,) = [m.body for m in providers.sms.outbox]
    assert "Complete Payment Agreement: https://paybot.test/p/" in text
    assert "$208.34" in text and "Reply STOP to opt out." in text
    document = await (await client.get(f"/api/v1/offers/{offer['id']}", headers=AUTH)).json()
    assert document["sent_at"] == START.isoformat()


async def test_a_withdrawn_offer_is_not_sent(app, client, providers):
    await add_account(app)
    _, offer = await post_offer(client, {"kind": "settlement", "percent_off": 36,
                                         "send_via": "sms"})
    response = await client.post(f"/api/v1/offers/{offer['id']}/withdraw", headers=AUTH)
    assert response.status == 200
    await deliver(app)
    assert providers.sms.outbox == []


async def test_whole_numbers_written_with_a_fraction_are_whole_numbers(app, client):
    # JSON Schema counts 6.0 as an integer: the server reads it as one too.
    await add_account(app)
    status, offer = await post_offer(client, {**PLAN, "count": 6.0, "expires_in_days": 1.0})
    assert status == 201, offer
    assert offer["installment_count"] == 6
    response = await client.post("/api/v1/accounts/ACC-1001/links", headers=AUTH,
                                 json={"amount": 50.0, "expires_in_hours": 2.0})
    assert response.status == 201, await response.text()


@pytest.mark.parametrize("total", ["1" + "0" * 29, "9" * 27, 10**29])
async def test_offers_with_huge_figures_are_422_not_500(app, client, total):
    await add_account(app)
    status, answer = await post_offer(client, {**PLAN, "total": total})
    assert status == 422, answer
    assert answer["error"].startswith("total: must"), answer
