"""The conversation in Spanish: an account loaded in Spanish pays by text end to end, ESPAÑOL and
ENGLISH switch the conversation's language, a first message in Spanish is answered in Spanish
and Spanish is offered once."""

from __future__ import annotations

import re

from sqlalchemy import select, update

from bot import appkeys
from bot.ledger.models import Account, Conversation, Payment
from bot.text.gsm7 import is_gsm7
from tests.conftest import API_KEY
from tests.seed import add_account

LINK_TOKEN = r"[A-Za-z0-9_-]{20,}"


async def account_language(app, number: str = "+15555550100") -> str:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return await session.scalar(select(Account.language).where(Account.phone == number))


async def conversation(app, number: str = "+15555550100") -> Conversation:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        found = await session.scalar(select(Conversation).where(Conversation.phone == number))
        assert found is not None
        return found


async def test_a_spanish_account_pays_by_text_in_spanish(app, phone, providers):
    await add_account(app, offers=True, language="es")
    maria = phone()

    assert await maria.send("saldo") == ["Su saldo en Acme Card ending 4821 es $1,250.00."]
    assert await maria.send("PAGAR") == [
        "Su email registrado es m***@example.com. Responda OK, o envienos un email nuevo."
    ]
    assert await maria.send("ok") == [
        "Ofertas para usted: 1) Pague $800.00 a mas tardar el 31 dic 2026 y liquide todo "
        "(ahorra $450.00) 2) 6 pagos mensuales de $208.34 3) Saltar. Responda 1, 2 o 3."
    ]
    assert await maria.send("3") == [
        "¿Cuanto desea pagar? Responda una cantidad de $25.00 a $1,250.00, o TODO."
    ]
    (method,) = await maria.send("$50")
    assert re.fullmatch(
        re.escape(
            "¿Pagar con Visa terminada en 4242? Responda 1 para Visa terminada en 4242, 2 para "
            "agregar una tarjeta o cuenta bancaria: https://paybot.test/p/"
        ) + LINK_TOKEN,
        method,
    ), method
    assert await maria.send("1") == [
        "¿Pagar ahora o después? Responda AHORA, o una fecha como 12/15 (hasta el 23 feb 2027)."
    ]
    assert await maria.send("12/15") == [
        "Confirme: $50.00 con Visa terminada en 4242 el 15 dic 2026. "
        "Responda SI para confirmar o NO para cambiar."
    ]
    assert await maria.send("si") == [
        "Responda ACEPTO para autorizar este pago segun los términos en "
        "https://paybot.test/t/2026-11 (o NO para cancelar)."
    ]
    (done,) = await maria.send("acepto")
    reference = done.split("Ref. ")[1].split(".")[0]
    assert done == (
        f"Listo: $50.00 programado para el 15 dic 2026. Ref. {reference}. "
        "Recibo enviado a m***@example.com."
    )
    assert is_gsm7(done) and reference.startswith("P-")


async def test_espanol_and_english_switch_with_the_current_question(app, phone):
    await add_account(app)
    maria = phone()
    for text in ["pay", "ok", "3"]:
        await maria.send(text)
    assert await maria.send("ESPAÑOL") == [
        "De acuerdo, le escribiremos en español. Reply ENGLISH for English.\n"
        "¿Cuanto desea pagar? Responda una cantidad de $25.00 a $1,250.00, o TODO."
    ]
    assert (await conversation(app)).language == "es"
    assert (await account_language(app)) == "es"  # emails and pages follow the customer's word
    (method,) = await maria.send("50")
    assert re.fullmatch(
        re.escape(
            "¿Pagar con Visa terminada en 4242? Responda 1 para Visa terminada en 4242, 2 para "
            "agregar una tarjeta o cuenta bancaria: https://paybot.test/p/"
        ) + LINK_TOKEN,
        method,
    ), method
    assert await maria.send("1") == [
        "¿Pagar ahora o después? Responda AHORA, o una fecha como 12/15 (hasta el 23 feb 2027)."
    ]
    assert await maria.send("english") == [
        "OK, we will text you in English. Responda ESPAÑOL para español.\n"
        "Pay now or later? Reply NOW, or a date such as 12/15 (up to Feb 23, 2027)."
    ]
    assert (await conversation(app)).language == "en"
    assert (await account_language(app)) == "en"


async def test_a_first_spanish_message_is_answered_in_spanish_and_spanish_offered_once(app, phone):
    await add_account(app)
    maria = phone()
    assert await maria.send("pagar") == [
        "Su email registrado es m***@example.com. Responda OK, o envienos un email nuevo.\n"
        "¿Prefiere español? Responda ESPAÑOL. To continue in English, reply ENGLISH."
    ]
    assert (await conversation(app)).language_asked_at is not None
    assert (await conversation(app)).language is None  # offered, not chosen
    # Not chosen: English again, and Spanish is not offered a second time.
    assert await maria.send("ok") == [
        "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
    ]
    assert await maria.send("cuanto debo") == [
        "Your balance on Acme Card ending 4821 is $1,250.00.\n"
        "How much would you like to pay? Reply an amount from $25.00 to $1,250.00, or FULL."
    ]
    assert await maria.send("espanol") == [
        "De acuerdo, le escribiremos en español. Reply ENGLISH for English.\n"
        "¿Cuanto desea pagar? Responda una cantidad de $25.00 a $1,250.00, o TODO."
    ]


async def test_an_opt_out_in_spanish_is_confirmed_in_spanish_and_nothing_else(app, phone):
    await add_account(app)
    assert await phone().send("alto") == [
        "Northwind Recovery: Cancelo su suscripcion y no recibira mas mensajes. "
        "Responda COMENZAR para suscribirse de nuevo."
    ]


async def test_an_unknown_number_verified_adopts_the_accounts_language(app, phone):
    await add_account(app, phone=None, ssn="123-45-6789", dob="1985-04-12", language="es")
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).values(email=None))
        await session.commit()
    stranger = phone("+15555550177")
    assert await stranger.send("hi") == [
        "PayBot: We do not recognize this number. To find your account, reply with your "
        "account ID (it is on your letter or statement). Reply STOP to opt out."
    ]
    await stranger.send("ACC-1001")
    (verified,) = await stranger.send("6789 04/12/1985")
    assert re.fullmatch(
        re.escape(
            "Gracias, Maria, su identidad esta verificada.\nSu saldo en Acme Card ending 4821 es "
            "$1,250.00. Responda PAGAR para pagar por mensaje o abra https://paybot.test/p/"
        ) + LINK_TOKEN + re.escape(
            " . Responda AGENTE para hablar con una persona, AYUDA para ayuda."
        ),
        verified,
    ), verified
    assert (await conversation(app, "+15555550177")).language is None  # it follows the account


async def declined_first_installment(app, phone, *, language: str):  # type: ignore[no-untyped-def]
    """A plan signed by text whose first installment the processor declined (as the worker
    writes it back), then PLAN and BALANCE."""
    await add_account(app, offers=True, language=language)
    maria = phone()
    for text in ["pay", "ok", "2", "1", "dec 1", "yes", "agree"]:
        await maria.send(text)
    async with app[appkeys.DATABASE].session() as session:
        first = await session.scalar(
            select(Payment).where(Payment.plan_id.is_not(None)).order_by(Payment.scheduled_for)
        )
        first.status = "declined"
        first.failure_code = "card_declined"
        await session.commit()
    return await maria.send("plan"), await maria.send("balance")


async def test_a_declined_installment_is_news_in_plan_and_balance(app, phone):
    (plan,), (balance, again) = await declined_first_installment(app, phone, language="en")
    assert plan == again == (
        "Your plan: next payment $208.34, Pending (scheduled for Jan 1). Paid so far $0.00; "
        "$1,041.66 left in 5 payments. 1 payment of $208.34 was declined on Dec 1. Reply MOVE "
        "to change the next date, SKIP to skip it, EXTRA to pay more now."
    )
    assert balance == (
        "Your balance on Acme Card ending 4821 is $1,250.00. You owe $208.34 after your "
        "scheduled and pending payments. Next payment: $208.34, Pending (scheduled for Jan 1). "
        "1 payment of $208.34 was declined on Dec 1."
    )


async def test_a_declined_installment_in_spanish(app, phone):
    (plan,), (balance, again) = await declined_first_installment(app, phone, language="es")
    assert plan == again == (
        "Su plan: proximo pago $208.34, Pendiente (programado para el 1 ene). Pagado: $0.00; "
        "quedan $1,041.66 en 5 pagos. 1 pago de $208.34 fue rechazado el 1 dic. Responda MOVER "
        "para cambiar la fecha, SALTAR para saltar el pago, EXTRA para pagar mas ahora."
    )
    assert balance == (
        "Su saldo en Acme Card ending 4821 es $1,250.00. Usted debe $208.34 después de sus "
        "pagos programados y pendientes. Proximo pago: $208.34, Pendiente (programado para el "
        "1 ene). 1 pago de $208.34 fue rechazado el 1 dic."
    )


async def test_a_person_takes_over_and_hands_back_in_spanish(app, client, phone):
    await add_account(app, language="es")
    maria = phone()
    assert await maria.send("AGENTE") == [
        "Gracias. Un miembro de nuestro equipo le escribira aqui en unos 15 minutos. Mientras "
        "tanto, responda MENU para usar el asistente automatico, o ALTO para no recibir mas "
        "mensajes."
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for action in ("claim", "handback"):
        response = await client.post(f"/api/v1/conversations/+15555550100/{action}",
                                     json={"agent": "jsmith"}, headers=headers)
        assert response.status == 200, await response.text()
    assert [m.body for m in app[appkeys.PROVIDERS].sms.outbox] == [
        "Esta de nuevo con el asistente automatico. Responda MENU para ver las opciones."
    ]


async def test_the_verification_code_goes_in_the_accounts_language(app, phone):
    await add_account(app, language="es")
    stranger = phone("+15555550177")
    await stranger.send("hi")
    await stranger.send("ACC-1001")
    await app[appkeys.ENGINE].settled()
    (sent,) = app[appkeys.PROVIDERS].sms.outbox
    assert sent.to == "+15555550100"
    assert re.fullmatch(
        r"Northwind Recovery: Su codigo de verificacion es \d{6}\. Vence en 10 minutos\. Si "
        r"usted no lo pidio, ignore este mensaje\.",
        sent.body,
    ), sent.body
