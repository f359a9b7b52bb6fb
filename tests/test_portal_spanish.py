"""The portal in the customer's language: the account's (or the language its phone chose in the
conversation), the English / Español switch on every page (the visitor's choice wins), and a
Spanish customer paying on the web from the link to the receipt."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from bot import appkeys
from bot.ledger.models import Account, Agreement, Conversation, Payment
from tests.seed import add_account
from tests.test_portal import Browser, link_for

FOOT_ES = "¿Preguntas? support@paybot.example. Pagos seguros procesados por Stripe."
FOOT_EN = "Questions? support@paybot.example. Secure payments processed by Stripe."


async def speaks(app, language: str) -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(language=language))
        await session.commit()


def lang_of(html: str) -> str:
    match = re.search(r'<html lang="(\w+)">', html)
    assert match
    return match.group(1)


def switch_href(html: str) -> str:
    match = re.search(r'class="lang-switch" href="([^"]+)"', html)
    assert match, "no language switch on the page"
    return match.group(1).replace("&amp;", "&")


async def test_a_spanish_account_pays_in_spanish_from_link_to_receipt(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    await speaks(app, "es")
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    assert lang_of(browser.html) == "es"
    head = "Northwind Recovery Ir al contenido Northwind Recovery English Cerrar sesión"
    assert browser.text == (
        f"Su saldo - {head} Su saldo Saldo de Acme Card ending 4821: $1,250.00 Hola, Maria. "
        "Puede pagar todo su saldo o una parte, ahora o en una fecha posterior. Hacer un pago "
        f"Sus pagos {FOOT_ES}"
    )
    await browser.step(action="start")
    assert browser.text == (
        f"Cuánto desea pagar - {head} Cuánto desea pagar Saldo de Acme Card ending 4821: "
        "$1,250.00 Monto (de $25.00 a $1,250.00) Continuar Pagar el saldo completo Atrás "
        f"Sus pagos {FOOT_ES}"
    )
    await browser.step(action="continue", amount="50")
    assert "Método de pago Usted va a pagar $50.00 Pagar con Visa terminada en 4242" in (
        browser.text
    )
    await browser.step(action="continue", choice="1")
    assert browser.text == (
        f"Cuándo - {head} Cuándo Usted va a pagar $50.00 Pague hoy o elija una fecha hasta el "
        f"23 feb 2027. Pagar en esta fecha Programar Pagar hoy Atrás Sus pagos {FOOT_ES}"
    )
    await browser.step(action="now")
    final = browser.text
    await browser.step(action="pay", consent="yes")
    async with app[appkeys.DATABASE].session() as session:
        agreement = await session.scalar(select(Agreement))
        payment = await session.scalar(select(Payment))
    # The one final step shows the very text that was recorded, whatever its language.
    assert final == (
        f"Revise y pague - {head} Revise y pague Usted va a pagar $50.00 Monto $50.00 Desde "
        "Visa terminada en 4242 Fecha Hoy Autorización de pago "
        f"{' '.join(agreement.text.split())} Condiciones completas Leí y acepto esta "
        "autorización, y acepto recibirla, junto con mis recibos y avisos, en forma electrónica "
        f"(puedo pedir una copia en papel sin costo). Pagar $50.00 Cambiar Sus pagos {FOOT_ES}"
    )
    assert agreement.channel == "web" and agreement.ip_address == "127.0.0.1"
    assert browser.text == (
        "Recibo - Northwind Recovery Ir al contenido Northwind Recovery English Gracias "
        f"Referencia {payment.reference} Monto $50.00 Pagado con Visa terminada en 4242 "
        "Fecha 25 nov 2026 Estado Pagado Cuenta Acme Card ending 4821 Saldo actual $1,200.00 "
        "Pagado a Northwind Recovery Imprimir recibo Enviarme el recibo por correo "
        f"Sus pagos · Volver a mi cuenta {FOOT_ES}"
    )


async def test_the_conversations_language_wins_over_the_accounts(app, client, phone):
    await add_account(app)
    link = await link_for(app, phone)  # the conversation exists now, in English
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(
            update(Conversation).where(Conversation.phone == "+15555550100").values(language="es")
        )
        await session.commit()
    browser = Browser(client)
    await browser.get(link)
    assert lang_of(browser.html) == "es" and "Hacer un pago" in browser.text


async def test_the_switch_is_on_every_page_and_the_visitors_choice_wins(app, client, phone):
    await add_account(app, creditor_settings={"contact_review": False})
    await speaks(app, "es")
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    await browser.step(action="start")
    assert switch_href(browser.html) == "/lang/en?next=/portal/pay"
    response = await client.get("/lang/en?next=/portal/pay", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/portal/pay"
    cookie = response.cookies["paybot_lang"]
    assert cookie.value == "en" and cookie["httponly"] and cookie["samesite"] == "Lax"
    await browser.get("/portal/pay")
    assert lang_of(browser.html) == "en"
    assert "How much Balance on Acme Card ending 4821: $1,250.00" in browser.text
    assert switch_href(browser.html) == "/lang/es?next=/portal/pay"
    # A form's answer (a 422 on the amount) comes back to its page, not to the post.
    await browser.post("/portal/pay", {"action": "continue", "amount": "abc"}, status=422)
    assert switch_href(browser.html) == "/lang/es?next=/portal/pay"
    for path in ["/portal/payments", "/portal/", "/t/2026-11", "/portal/nowhere"]:
        response = await client.get(path)
        html = await response.text()
        assert switch_href(html).startswith("/lang/es?next="), path
        assert lang_of(html) == "en", path


async def test_the_switch_goes_back_only_to_this_site(client):
    for target in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "", "x"]:
        response = await client.get(f"/lang/es?next={target}", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/portal/", target
    response = await client.get("/lang/fr?next=/portal/", allow_redirects=False)
    assert response.status == 303 and "paybot_lang" not in response.cookies


async def test_the_lookup_the_terms_and_the_404_in_spanish_under_the_creditors_name(app, client):
    await add_account(app)
    await client.get("/lang/es?next=/portal/")
    response = await client.get("/portal/")
    assert lang_of(await response.text()) == "es"
    response = await client.get("/t/2026-11")
    browser = Browser(client)
    browser.html = await response.text()
    assert response.status == 200 and lang_of(browser.html) == "es"
    assert browser.text == (
        "Condiciones de pago - Northwind Recovery Ir al contenido Northwind Recovery English "
        "Condiciones de pago Versión 2026-11 Su autorización Cuando acepta un pago, ya sea "
        "respondiendo AGREE a nuestro mensaje de texto o marcando la casilla y presionando el "
        "botón en nuestro sitio web, autoriza a Northwind Recovery a cobrar al método de pago "
        "que eligió el monto y en la fecha o fechas que se le mostraron antes de aceptar. "
        "Registros electrónicos Usted acepta recibir esta autorización y sus recibos en forma "
        "electrónica. Puede pedir una copia en papel sin costo respondiendo AGENTE o "
        "comunicándose con nosotros. Cómo detener un pago Puede revocar la autorización de "
        "cualquier pago que aún no se haya hecho comunicándose con nosotros al menos tres días "
        "hábiles antes de su fecha. Le enviamos una copia de la autorización por correo "
        "electrónico junto con su recibo. Preguntas Comuníquese con Northwind Recovery: "
        f"support@paybot.example. Busque su cuenta {FOOT_ES}"
    )
    response = await client.get("/portal/no-such-page")
    browser.html = await response.text()
    assert response.status == 404 and 'href="/portal/"' in browser.html
    assert browser.text == (
        "No encontrado - Northwind Recovery Ir al contenido Northwind Recovery English "
        "No encontramos esa página Busque su cuenta o responda LINK a nuestro mensaje para "
        f"recibir un enlace seguro. Ir al portal de pagos {FOOT_ES}"
    )
    assert "PayBot" not in browser.text


async def test_after_a_forms_answer_the_switch_comes_back_to_its_page(app, client):
    await add_account(app)
    browser = Browser(client)
    await browser.get("/portal/")
    await browser.post("/portal/lookup", {"identifier": ""}, status=422)
    assert "Enter your account ID or Social Security number." in browser.text
    assert switch_href(browser.html) == "/lang/es?next=/portal/"
    response = await client.get(switch_href(browser.html))
    html = await response.text()
    assert response.status == 200 and lang_of(html) == "es"
    assert "Busque su cuenta" in html
