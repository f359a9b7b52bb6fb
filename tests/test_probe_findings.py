"""What trying the product as a customer found and the other tests missed: each test is one
conversation a person had, asserted whole."""

from __future__ import annotations

import re

from bot import appkeys
from bot.ledger.models import Account
from tests.seed import add_account


async def test_yes_answers_pay_with_the_one_saved_card(app, phone):
    # "Pay with Visa ending 4242?" is a yes/no question: "si" used to be "not one of the
    # options", and three of them handed the customer to a person.
    await add_account(app, language="es")
    maria = phone()
    for text in ["pagar", "ok", "50"]:
        await maria.send(text)
    assert await maria.send("si") == [
        "¿Pagar ahora o después? Responda AHORA, o una fecha como 12/15 (hasta el 23 feb 2027)."
    ]


async def test_yes_answers_pay_with_the_one_saved_card_in_english(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "50"]:
        await maria.send(text)
    assert await maria.send("yes") == [
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    ]


async def test_yes_is_no_choice_among_two_saved_cards(app, phone):
    await add_account(app, methods=("pm_card_visa", "pm_card_mastercard"))
    maria = phone()
    for text in ["pay", "ok", "50"]:
        await maria.send(text)
    (reply,) = await maria.send("yes")
    assert re.fullmatch(
        re.escape(
            "That is not one of the options.\nWhich payment method? Reply 1 for Visa ending 4242, "
            "2 for Mastercard ending 4444, or 3 to add a card or bank account: "
            "https://paybot.test/p/"
        ) + r"[A-Za-z0-9_-]{20,}",
        reply,
    ), reply


async def test_si_to_the_spanish_offer_keeps_the_conversation_in_spanish(app, phone):
    # An English account writing in Spanish is answered in Spanish and offered Spanish; its "si"
    # (to "¿Prefiere español?" as much as to the email) was answered in English.
    await add_account(app, offers=True)
    maria = phone()
    assert await maria.send("hola quiero pagar") == [
        "Su email registrado es m***@example.com. Responda OK, o envienos un email nuevo.\n"
        "¿Prefiere español? Responda ESPAÑOL. To continue in English, reply ENGLISH."
    ]
    assert await maria.send("sí") == [
        "Ofertas para usted: 1) Pague $800.00 a mas tardar el 31 dic 2026 y liquide todo "
        "(ahorra $450.00) 2) 6 pagos mensuales de $208.34 3) Saltar. Responda 1, 2 o 3."
    ]
    assert await maria.send("3") == [
        "¿Cuanto desea pagar? Responda una cantidad de $25.00 a $1,250.00, o TODO."
    ]


async def test_english_chosen_stays_english(app, phone):
    await add_account(app)
    maria = phone()
    await maria.send("quien es")
    await maria.send("ENGLISH")
    assert await maria.send("si") == [
        "We have your email as m***@example.com. Reply OK, or send a new email."
    ]
    assert await maria.send("cuanto debo") == [
        "Your balance on Acme Card ending 4821 is $1,250.00.\n"
        "We have your email as m***@example.com. Reply OK, or send a new email."
    ]


async def test_espanol_by_text_makes_the_receipt_email_spanish_too(app, phone):
    # ESPAÑOL changed the texts, and the portal follows the conversation, but the receipt
    # email followed the account's loaded language: "Recibo enviado" led to an English email.
    account = await add_account(app)
    maria = phone()
    for text in ["ESPAÑOL", "pagar", "ok", "50", "1", "ahora", "si"]:
        await maria.send(text)
    (done,) = await maria.send("acepto")
    reference = done.split("Ref. ")[1].split(".")[0]
    assert done == (
        f"Listo: $50.00 pagado con Visa terminada en 4242. Ref. {reference}. "
        "Recibo enviado a m***@example.com."
    )
    (email,) = app[appkeys.PROVIDERS].email.outbox
    assert email.subject == f"Su recibo de pago {reference}"
    assert email.text == (
        "Northwind Recovery\n\nHola, Maria:\n\nGracias. Recibimos su pago de $50.00.\n\n"
        f"Referencia: {reference}\nMonto: $50.00\nPagado con: Visa terminada en 4242\n"
        "Fecha de pago: 25 nov 2026\nEstado: Pagado\nSaldo pendiente: $1,200.00\n"
        "Cuenta: Acme Card ending 4821\n\n"
        "Esta es una comunicación de un cobrador de deudas.\n\n"
        "¿Preguntas? Responda AGENTE a nuestros mensajes de texto.\n"
        "Para dejar de recibir correos, responda a este mensaje con UNSUBSCRIBE.\n"
    )
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Account, account.id)).language == "es"
    await maria.send("ENGLISH")
    async with app[appkeys.DATABASE].session() as session:
        assert (await session.get(Account, account.id)).language == "en"


async def test_who_is_this_in_spanish_says_the_default_disclosure_in_spanish(app, phone):
    # The creditor's disclosure is the default text: the emails translate it, the texts
    # printed it in English inside a Spanish reply.
    await add_account(app, language="es")
    assert await phone().send("quien es") == [
        "Le escribe Northwind Recovery sobre su cuenta. Esta es una comunicacion de un cobrador "
        "de deudas. ¿Dudas? support@paybot.example. Responda AYUDA para ayuda, ALTO para no "
        "recibir mas."
    ]
