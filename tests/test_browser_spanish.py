"""A Spanish-speaking customer pays on the web in Chromium, from the texted link to the receipt,
at a phone and a desktop viewport, and uses the English / Español switch. Screenshots of each step
land in test-artifacts/screenshots/<test>/."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import expect
from sqlalchemy import update

from bot import appkeys
from bot.ledger.models import Account
from tests.browser_support import check, save_test_card
from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import LiveServer, Tab
from tests.seed import add_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

LINK = re.compile(r"http://127\.0\.0\.1:\d+/p/[\w-]+")


async def spanish_customer(live: LiveServer) -> str:
    await add_account(live.app, methods=(), creditor_settings={"contact_review": False})
    async with live.app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(language="es"))
        await session.commit()
    (reply,) = await live.phone().send("hi")
    match = LINK.search(reply)
    assert match, reply
    return match.group(0)


async def test_a_spanish_customer_pays_on_the_web(live: LiveServer, tab: Tab) -> None:
    page = tab.page
    await page.goto(await spanish_customer(live))
    await expect(page.locator("html")).to_have_attribute("lang", "es")
    await expect(page.locator("h1")).to_have_text("Su saldo")
    await expect(page.locator(".balance")).to_have_text(
        "Saldo de Acme Card ending 4821: $1,250.00"
    )
    await tab.shot("es-saldo")

    await tab.press("Hacer un pago")
    await expect(page.locator("h1")).to_have_text("Cuánto desea pagar")
    await tab.type_into(page.get_by_label("Monto (de $25.00 a $1,250.00)"), "60")
    await tab.shot("es-monto")
    await tab.press("Continuar")

    await expect(page.locator("h1")).to_have_text("Método de pago")
    await expect(page.locator("#paying")).to_have_text("Usted va a pagar $60.00")
    await expect(page.get_by_text("Agregue una tarjeta para continuar.")).to_be_visible()
    await expect(page.locator("#card-element input")).to_have_count(5)
    await tab.shot("es-metodo")
    await save_test_card(tab)
    await expect(page.locator("h1")).to_have_text("Cuándo")
    await expect(page.locator("#paying")).to_have_text("Usted va a pagar $60.00")
    await tab.shot("es-cuando")

    await tab.press("Pagar hoy")
    await expect(page.locator("h1")).to_have_text("Revise y pague")
    summary = page.locator("dl.summary")
    await expect(summary).to_have_text(
        re.compile(r"Monto\s*\$60\.00\s*Desde\s*Visa terminada en 4242\s*Fecha\s*Hoy")
    )
    pay = page.locator("#pay-button")
    await expect(pay).to_have_text("Pagar $60.00")
    await tab.shot("es-revise-y-pague")
    await tab.press(pay)  # the consent is required: the browser holds the form back
    await expect(page.locator("h1")).to_have_text("Revise y pague")
    await check(tab, "Leí y acepto esta autorización")
    await tab.press(pay)

    await expect(page.locator("h1")).to_have_text("Gracias")
    receipt = page.locator(".receipt")
    for text in ["$60.00", "Visa terminada en 4242", "Pagado", "Saldo actual", "$1,190.00"]:
        await expect(receipt).to_contain_text(text)
    await expect(page.get_by_role("button", name="Enviarme el recibo por correo")).to_be_visible()
    await expect(page.get_by_role("button", name="Imprimir recibo")).to_be_visible()
    await tab.shot("es-recibo")
    receipt_url = page.url

    # The switch: to English and back, on the same page each time.
    await tab.press(page.get_by_role("link", name="English"))
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("h1")).to_have_text("Thank you")
    assert page.url == receipt_url
    await tab.shot("en-receipt")
    await tab.press(page.get_by_role("link", name="Español"))
    await expect(page.locator("h1")).to_have_text("Gracias")
    assert page.url == receipt_url

    await tab.press(page.get_by_role("link", name="Sus pagos"))
    await expect(page.locator("h1")).to_have_text("Sus pagos")
    await expect(page.locator("#payments tbody tr")).to_have_count(1)
    await expect(page.locator("#payments tbody tr")).to_contain_text("Pagado")
    await tab.shot("es-sus-pagos")

    # The terms, in Spanish, under the creditor's name, readable on a phone (no sideways scroll).
    await page.goto("/t/2026-11")
    await expect(page.locator("h1")).to_have_text("Condiciones de pago")
    await expect(page.locator(".brand")).to_have_text("Northwind Recovery")
    await tab.shot("es-condiciones")

    account = await live.api("/api/v1/accounts/ACC-1001")
    assert account["balance_cents"] == 125000 - 6000
    (intent,) = await live.payment_intents()
    assert intent["status"] == "succeeded" and intent["amount"] == 6000
    tab.assert_clean(live)
