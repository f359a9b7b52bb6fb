"""Payment gateway: StripeGateway against a real localstripe process, and SandboxGateway."""

import asyncio
import logging

import pytest
import stripe
from aiohttp import web

from bot.providers.localstripe import LOCALSTRIPE_KEY, free_port
from bot.providers.payments import (
    ChargeResult,
    GatewayUnavailable,
    MethodRejected,
    PaymentError,
    PaymentGateway,
    SavedMethod,
)
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.stripe_gateway import StripeGateway

pytest_plugins = ["tests.fixtures_stripe"]


async def _customer(gateway: PaymentGateway, ref: str = "ACC-1") -> str:
    return await gateway.ensure_customer(
        account_ref=ref, name="Maria Lopez", email="maria@example.com", existing_id=None
    )


async def _charge(gateway: PaymentGateway, customer: str, method: SavedMethod | str, **kw):
    ref = method.processor_ref if isinstance(method, SavedMethod) else method
    params = {
        "customer_id": customer,
        "method_ref": ref,
        "amount_cents": 5000,
        "idempotency_key": "pay-1-attempt-1",
        "metadata": {"payment_id": "1", "account_ref": "ACC-1"},
    }
    if isinstance(method, SavedMethod):
        params["method_kind"] = method.kind
    params.update(kw)
    return await gateway.charge(**params)


# --------------------------------------------------------------- both backends


async def test_ensure_customer_creates_then_reuses(payment_gateway: PaymentGateway):
    customer = await _customer(payment_gateway)
    assert customer.startswith("cus_")
    again = await payment_gateway.ensure_customer(
        account_ref="ACC-1", name="Maria Lopez", email=None, existing_id=customer
    )
    assert again == customer


async def test_save_visa(payment_gateway: PaymentGateway, method_ref_for):
    customer = await _customer(payment_gateway)
    saved = await payment_gateway.save_method(
        customer_id=customer, method_ref=await method_ref_for(payment_gateway, "visa")
    )
    assert saved.processor_ref.startswith("pm_")
    assert (saved.kind, saved.brand, saved.last4) == ("card", "Visa", "4242")
    assert (saved.exp_month, saved.exp_year) == (12, 2030)


async def test_charge_now_is_paid(payment_gateway: PaymentGateway, method_ref_for):
    customer = await _customer(payment_gateway)
    saved = await payment_gateway.save_method(
        customer_id=customer, method_ref=await method_ref_for(payment_gateway, "visa")
    )
    result = await _charge(payment_gateway, customer, saved)
    assert result.status == "paid"
    assert result.processor_id and result.processor_id.startswith("pi_")
    assert result.failure_code is None and result.failure_message is None


async def test_charge_without_kind_looks_it_up(payment_gateway: PaymentGateway, method_ref_for):
    customer = await _customer(payment_gateway)
    saved = await payment_gateway.save_method(
        customer_id=customer, method_ref=await method_ref_for(payment_gateway, "visa")
    )
    result = await _charge(payment_gateway, customer, saved.processor_ref)
    assert result.status == "paid"


async def test_decline_at_charge_is_a_result(payment_gateway: PaymentGateway, method_ref_for):
    customer = await _customer(payment_gateway)
    saved = await payment_gateway.save_method(
        customer_id=customer,
        method_ref=await method_ref_for(payment_gateway, "charge_declined"),
    )
    assert saved.last4 == "0341"
    result = await _charge(payment_gateway, customer, saved)
    assert result.status == "declined"
    assert result.failure_code == "card_declined"
    assert result.failure_message and "declined" in result.failure_message
    assert result.failure_message.isascii()
    # localstripe names only the charge; the gateway finds the PaymentIntent behind it
    assert result.processor_id and result.processor_id.startswith("pi_")


async def test_decline_at_attach_raises_method_rejected(
    payment_gateway: PaymentGateway, method_ref_for
):
    customer = await _customer(payment_gateway)
    ref = await method_ref_for(payment_gateway, "attach_declined")
    with pytest.raises(MethodRejected) as info:
        await payment_gateway.save_method(customer_id=customer, method_ref=ref)
    assert info.value.code == "card_declined"
    assert "4000000000000002" not in str(info.value)


async def test_three_d_secure_requires_action(payment_gateway: PaymentGateway, method_ref_for):
    customer = await _customer(payment_gateway)
    saved = await payment_gateway.save_method(
        customer_id=customer,
        method_ref=await method_ref_for(payment_gateway, "requires_action"),
    )
    result = await _charge(payment_gateway, customer, saved)
    assert result.status == "requires_action"
    assert result.processor_id and result.processor_id.startswith("pi_")


async def test_setup_intent(payment_gateway: PaymentGateway):
    customer = await _customer(payment_gateway)
    seti, secret = await payment_gateway.create_setup_intent(customer_id=customer)
    assert seti.startswith("seti_")
    assert secret.startswith(seti + "_secret_")


@pytest.mark.parametrize("amount", [0, -100, 12.5, True])
async def test_bad_amount_refused_before_any_call(payment_gateway: PaymentGateway, amount):
    with pytest.raises(PaymentError) as info:
        await _charge(payment_gateway, "cus_x", "pm_card_visa", amount_cents=amount)
    assert info.value.code == "invalid_amount"
    assert not isinstance(info.value, GatewayUnavailable)


async def test_missing_idempotency_key_refused(payment_gateway: PaymentGateway):
    with pytest.raises(PaymentError):
        await _charge(payment_gateway, "cus_x", "pm_card_visa", idempotency_key=" ")


# --------------------------------------------------------------- sandbox only


async def test_sandbox_same_key_charges_once(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    saved = await sandbox_gateway.save_method(customer_id=customer, method_ref="pm_card_visa")
    first = await _charge(sandbox_gateway, customer, saved)
    second = await _charge(sandbox_gateway, customer, saved)
    assert first == second
    assert len(sandbox_gateway.charges) == 1
    third = await _charge(sandbox_gateway, customer, saved, idempotency_key="pay-1-attempt-2")
    assert third.processor_id != first.processor_id
    assert len(sandbox_gateway.charges) == 2


async def test_sandbox_same_key_other_params_refused(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    await _charge(sandbox_gateway, customer, "pm_card_visa")
    with pytest.raises(PaymentError) as info:
        await _charge(sandbox_gateway, customer, "pm_card_visa", amount_cents=6000)
    assert info.value.code == "idempotency_error"
    assert len(sandbox_gateway.charges) == 1


async def test_sandbox_same_key_replays_a_decline(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    first = await _charge(sandbox_gateway, customer, "pm_card_chargeCustomerFail")
    second = await _charge(sandbox_gateway, customer, "pm_card_chargeCustomerFail")
    assert first == second and first.status == "declined"
    assert len(sandbox_gateway.charges) == 1


async def test_sandbox_methods(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    mc = await sandbox_gateway.save_method(customer_id=customer, method_ref="pm_card_mastercard")
    assert (mc.brand, mc.last4) == ("Mastercard", "4444")
    bank = await sandbox_gateway.save_method(customer_id=customer, method_ref="pm_usBankAccount")
    assert bank == SavedMethod("pm_usBankAccount", "us_bank_account", "Bank", "6789")
    with pytest.raises(MethodRejected):
        await sandbox_gateway.save_method(customer_id=customer, method_ref="pm_nope")


async def test_sandbox_ach_is_pending_then_settles(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    bank = await sandbox_gateway.save_method(customer_id=customer, method_ref="pm_usBankAccount")
    result = await _charge(sandbox_gateway, customer, bank)
    assert result.status == "pending"
    assert sandbox_gateway.settle(result.processor_id) == ChargeResult("paid", result.processor_id)
    assert sandbox_gateway.charges[0].status == "paid"
    # a replay answers what the first call answered, as Stripe does
    assert (await _charge(sandbox_gateway, customer, bank)).status == "pending"


async def test_sandbox_outcomes_repeat_but_its_ids_never_do():
    # Ids used to repeat too (pi_sandbox000001 in every process): the ledger then held two
    # payments with one processor id. Each sandbox now has ids of its own.
    async def run() -> tuple[list[str], list[str]]:
        gw = SandboxGateway()
        customer = await _customer(gw)
        seti, _ = await gw.create_setup_intent(customer_id=customer)
        results = [await _charge(gw, customer, ref, idempotency_key=ref)
                   for ref in ("pm_card_visa", "pm_card_chargeCustomerFail", "pm_usBankAccount")]
        return ([r.status for r in results],
                [customer, seti, *(str(r.processor_id) for r in results)])

    (outcomes, ids), (again, other_ids) = await run(), await run()
    assert outcomes == again == ["paid", "declined", "pending"]
    assert not set(ids) & set(other_ids)
    assert [i.split("_sandbox_")[0] for i in ids] == ["cus", "seti", "pi", "pi", "pi"]


async def test_sandbox_same_account_same_customer(sandbox_gateway: SandboxGateway):
    assert await _customer(sandbox_gateway, "A") == await _customer(sandbox_gateway, "A")
    assert await _customer(sandbox_gateway, "A") != await _customer(sandbox_gateway, "B")


async def test_sandbox_unavailable_switch(sandbox_gateway: SandboxGateway):
    sandbox_gateway.unavailable = True
    with pytest.raises(GatewayUnavailable):
        await _customer(sandbox_gateway)
    with pytest.raises(GatewayUnavailable):
        await _charge(sandbox_gateway, "cus_x", "pm_card_visa")
    assert sandbox_gateway.charges == []


async def test_sandbox_lost_response_then_retry_charges_once(sandbox_gateway: SandboxGateway):
    customer = await _customer(sandbox_gateway)
    sandbox_gateway.lose_next_charge_response = True
    with pytest.raises(GatewayUnavailable):
        await _charge(sandbox_gateway, customer, "pm_card_visa")
    assert len(sandbox_gateway.charges) == 1  # it did charge
    result = await _charge(sandbox_gateway, customer, "pm_card_visa")
    assert result.status == "paid"
    assert len(sandbox_gateway.charges) == 1


async def test_sandbox_closed(sandbox_gateway: SandboxGateway):
    await sandbox_gateway.close()
    with pytest.raises(PaymentError):
        await _customer(sandbox_gateway)


def test_both_satisfy_the_protocol():
    assert isinstance(SandboxGateway(), PaymentGateway)
    assert issubclass(StripeGateway, PaymentGateway)


# --------------------------------------------------------------- Stripe only


async def test_stripe_missing_customer_is_replaced(stripe_gateway: StripeGateway):
    customer = await stripe_gateway.ensure_customer(
        account_ref="ACC-1", name="Maria", email=None, existing_id="cus_gone"
    )
    assert customer.startswith("cus_") and customer != "cus_gone"


async def test_stripe_save_sets_default_method(stripe_gateway: StripeGateway):
    customer = await _customer(stripe_gateway)
    saved = await stripe_gateway.save_method(customer_id=customer, method_ref="pm_card_visa")
    cus = await stripe_gateway.client.v1.customers.retrieve_async(customer)
    assert cus.invoice_settings.default_payment_method == saved.processor_ref


async def test_stripe_save_twice_is_fine(stripe_gateway: StripeGateway):
    customer = await _customer(stripe_gateway)
    saved = await stripe_gateway.save_method(customer_id=customer, method_ref="pm_card_visa")
    again = await stripe_gateway.save_method(customer_id=customer, method_ref=saved.processor_ref)
    assert again == saved


async def test_stripe_unknown_method_rejected(stripe_gateway: StripeGateway):
    customer = await _customer(stripe_gateway)
    with pytest.raises(MethodRejected):
        await stripe_gateway.save_method(customer_id=customer, method_ref="pm_doesnotexist")


async def test_localstripe_ignores_idempotency_keys(stripe_gateway: StripeGateway):
    """Pinned localstripe 1.15.10 behaviour: why the ledger guard must exist."""
    customer = await _customer(stripe_gateway)
    saved = await stripe_gateway.save_method(customer_id=customer, method_ref="pm_card_visa")
    first = await _charge(stripe_gateway, customer, saved)
    second = await _charge(stripe_gateway, customer, saved)
    assert first.status == second.status == "paid"
    assert first.processor_id != second.processor_id


async def test_stripe_closed_port_is_unavailable():
    gateway = StripeGateway(
        LOCALSTRIPE_KEY, api_base=f"http://127.0.0.1:{free_port()}", max_network_retries=0
    )
    try:
        with pytest.raises(GatewayUnavailable) as info:
            await _customer(gateway)
        assert LOCALSTRIPE_KEY not in str(info.value)
        with pytest.raises(GatewayUnavailable):
            await _charge(gateway, "cus_x", "pm_x", method_kind="card")
        with pytest.raises(GatewayUnavailable):
            await gateway.save_method(customer_id="cus_x", method_ref="pm_x")
    finally:
        await gateway.close()


async def test_stripe_bad_key_is_unavailable(localstripe_url: str):
    async with StripeGateway(
        "not_a_key_xyz", api_base=localstripe_url, max_network_retries=0
    ) as gateway:
        with pytest.raises(GatewayUnavailable) as info:
            await _customer(gateway)
    assert "not_a_key_xyz" not in str(info.value)


async def test_stripe_close_closes_the_session(stripe_gateway: StripeGateway):
    await _customer(stripe_gateway)
    session = stripe_gateway._http._cached_session
    assert session is not None and not session.closed
    await stripe_gateway.close()
    assert session.closed
    await stripe_gateway.close()  # idempotent
    with pytest.raises(PaymentError):
        await _customer(stripe_gateway)


async def test_stripe_never_logs_secrets(
    stripe_gateway: StripeGateway, method_ref_for, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    customer = await _customer(stripe_gateway)
    _, secret = await stripe_gateway.create_setup_intent(customer_id=customer)
    ref = await method_ref_for(stripe_gateway, "charge_declined")
    saved = await stripe_gateway.save_method(customer_id=customer, method_ref=ref)
    await _charge(stripe_gateway, customer, saved)
    assert "stripe charge" in caplog.text  # we do log, just not secrets
    for needle in (secret, "_secret_", LOCALSTRIPE_KEY, "4000000000000341"):
        assert needle not in caplog.text


# A tiny fake API: checks what the SDK really sends, and answers 500s.


@pytest.fixture
async def fake_stripe():
    seen: list[tuple[str, dict[str, str], dict[str, str]]] = []
    answers: list[tuple[int, dict]] = []

    async def handler(request: web.Request) -> web.Response:
        form = dict(await request.post())
        seen.append((request.path, dict(request.headers), {k: str(v) for k, v in form.items()}))
        status, body = answers.pop(0) if answers else (500, {"error": {"type": "api_error"}})
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen, answers
    finally:
        await runner.cleanup()


async def test_stripe_sends_our_idempotency_key_and_params(fake_stripe):
    url, seen, answers = fake_stripe
    answers.append((200, {"id": "pi_fake", "object": "payment_intent", "status": "processing"}))
    async with StripeGateway(LOCALSTRIPE_KEY, api_base=url, max_network_retries=0) as gateway:
        result = await _charge(
            gateway,
            "cus_1",
            SavedMethod("pm_bank", "us_bank_account", "Bank", "6789"),
            idempotency_key="payment-42-try-1",
        )
    assert result == ChargeResult(status="pending", processor_id="pi_fake")
    [(path, headers, form)] = seen
    assert path == "/v1/payment_intents"
    assert headers["Idempotency-Key"] == "payment-42-try-1"
    assert form["payment_method_types[0]"] == "us_bank_account"
    assert form["currency"] == "usd"
    assert form["off_session"] == "true" and form["confirm"] == "true"
    assert form["metadata[payment_id]"] == "1"
    assert "description" not in form and "receipt_email" not in form


async def test_stripe_5xx_retries_with_the_same_key_then_unavailable(
    fake_stripe, monkeypatch: pytest.MonkeyPatch
):
    url, seen, _ = fake_stripe

    async def no_sleep(self, secs):  # keep the SDK's back-off out of the test's time
        await asyncio.sleep(0)

    monkeypatch.setattr(stripe.AIOHTTPClient, "sleep_async", no_sleep)
    async with StripeGateway(LOCALSTRIPE_KEY, api_base=url, max_network_retries=2) as gateway:
        with pytest.raises(GatewayUnavailable):
            await _charge(gateway, "cus_1", "pm_1", method_kind="card", idempotency_key="k-9")
    assert len(seen) == 3
    assert {headers["Idempotency-Key"] for _, headers, _ in seen} == {"k-9"}


async def test_stripe_declined_card_error_with_decline_code(fake_stripe):
    url, _, answers = fake_stripe
    answers.append(
        (
            402,
            {
                "error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                    "payment_intent": {
                        "id": "pi_declined",
                        "object": "payment_intent",
                        "status": "requires_payment_method",
                    },
                }
            },
        )
    )
    async with StripeGateway(LOCALSTRIPE_KEY, api_base=url, max_network_retries=0) as gateway:
        result = await _charge(gateway, "cus_1", "pm_1", method_kind="card")
    assert result.status == "declined"
    assert result.processor_id == "pi_declined"
    assert (result.failure_code, result.decline_code) == ("card_declined", "insufficient_funds")
    assert "insufficient funds" in (result.failure_message or "")


async def test_stripe_authentication_required_off_session(fake_stripe):
    url, _, answers = fake_stripe
    answers.append(
        (
            402,
            {
                "error": {
                    "type": "card_error",
                    "code": "authentication_required",
                    "payment_intent": {"id": "pi_auth", "object": "payment_intent"},
                }
            },
        )
    )
    async with StripeGateway(LOCALSTRIPE_KEY, api_base=url, max_network_retries=0) as gateway:
        result = await _charge(gateway, "cus_1", "pm_1", method_kind="card")
    assert (result.status, result.processor_id) == ("requires_action", "pi_auth")
