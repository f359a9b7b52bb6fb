"""A receipt read whole, as the customer gets it: paid and scheduled, in English and in Spanish,
its subject, its From (the creditor the customer knows, at PayBot's address), its plain text
line by line and its HTML as a person reads it (tests/email_support.visible_text), in a card at
most 600 px wide."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import update

from bot import appkeys
from bot.ledger.models import Account, Creditor
from bot.outreach import email_outbox
from bot.payments.service import PaymentOutcome
from tests.email_support import visible_text
from tests.seed import add_account

FROM = "Northwind Recovery <paybot@example.com>"
FOOTER_EN = ("Questions? Reply AGENT to our text messages.\n"
             "To stop receiving emails, reply to this message with UNSUBSCRIBE.")
FOOTER_ES = ("¿Preguntas? Responda AGENTE a nuestros mensajes de texto.\n"
             "Para dejar de recibir correos, responda a este mensaje con UNSUBSCRIBE.")


def card_is_styled(html: str) -> None:
    """Tables and inline styles (what mail programs render), the width held to 600 px."""
    assert "max-width: 600px" in html and 'role="presentation"' in html
    assert '<!--[if mso]><table role="presentation" width="600"' in html
    assert "<style" not in html and "<link" not in html


async def receipt_by_text(app, phone, when: str):  # type: ignore[no-untyped-def]
    maria = phone()
    for text in ["pay", "ok", "50", "1", when, "yes", "agree"]:
        said = await maria.send(text)
    await app[appkeys.ENGINE].settled()
    (receipt,) = app[appkeys.PROVIDERS].email.outbox
    reference = said[-1].split("Ref ")[1].split(".")[0]
    return receipt, reference


async def test_a_paid_receipt_whole(app, phone):
    await add_account(app)
    receipt, ref = await receipt_by_text(app, phone, "now")
    assert (receipt.to, receipt.sender, receipt.subject) == (
        "maria@example.com", FROM, f"Your payment receipt {ref}")
    assert receipt.text == (
        "Northwind Recovery\n\nHi Maria,\n\n"
        "Thank you. We received your payment of $50.00.\n\n"
        f"Reference: {ref}\n"
        "Amount: $50.00\n"
        "Paid with: Visa ending 4242\n"
        "Payment date: Nov 25, 2026\n"
        "Status: Paid\n"
        "Left to pay: $1,200.00\n"
        "Account: Acme Card ending 4821\n\n"
        "This is a communication from a debt collector.\n\n"
        f"{FOOTER_EN}\n"
    )
    assert visible_text(receipt.html) == (
        "Northwind Recovery\nHi Maria,\n"
        "Thank you. We received your payment of $50.00.\n"
        f"| Reference | {ref} |\n"
        "| Amount | $50.00 |\n"
        "| Paid with | Visa ending 4242 |\n"
        "| Payment date | Nov 25, 2026 |\n"
        "| Status | Paid |\n"
        "| Left to pay | $1,200.00 |\n"
        "| Account | Acme Card ending 4821 |\n"
        "This is a communication from a debt collector.\n"
        f"{FOOTER_EN}"
    )
    card_is_styled(receipt.html)
    assert '<html lang="en">' in receipt.html


async def test_a_scheduled_payment_gets_scheduled_wording_not_paid(app, phone):
    await add_account(app)
    receipt, ref = await receipt_by_text(app, phone, "dec 15")
    assert (receipt.sender, receipt.subject) == (
        FROM, f"Your payment {ref} is scheduled for Dec 15, 2026")
    assert receipt.text == (
        "Northwind Recovery\n\nHi Maria,\n\n"
        "Your payment of $50.00 is scheduled for Dec 15, 2026: we will charge Visa ending 4242 "
        "that day. Nothing has been charged yet.\n\n"
        f"Reference: {ref}\n"
        "Amount: $50.00\n"
        "To be charged to: Visa ending 4242\n"
        "Payment date: Dec 15, 2026\n"
        "Status: Pending (scheduled for Dec 15)\n"
        "Left to pay after this payment: $1,200.00\n"
        "Account: Acme Card ending 4821\n\n"
        "This is a communication from a debt collector.\n\n"
        f"{FOOTER_EN}\n"
    )
    assert "Paid with" not in receipt.text and "receipt" not in receipt.subject
    assert visible_text(receipt.html).splitlines()[2:9] == [
        "Your payment of $50.00 is scheduled for Dec 15, 2026: we will charge Visa ending 4242 "
        "that day. Nothing has been charged yet.",
        f"| Reference | {ref} |",
        "| Amount | $50.00 |",
        "| To be charged to | Visa ending 4242 |",
        "| Payment date | Dec 15, 2026 |",
        "| Status | Pending (scheduled for Dec 15) |",
        "| Left to pay after this payment | $1,200.00 |",
    ]
    card_is_styled(receipt.html)


async def spanish_receipt(app, outcome: PaymentOutcome, *, balance_cents: int):  # type: ignore[no-untyped-def]
    """A receipt queued and sent through the outbox for an account loaded in Spanish."""
    account = await add_account(app)
    database, clock = app[appkeys.DATABASE], app[appkeys.CLOCK]
    async with database.session() as session:
        await session.execute(update(Account).where(Account.id == account.id)
                              .values(language="es", balance_cents=balance_cents))
        await session.execute(update(Creditor).values(brand="Northwind Cobranzas"))
        await session.commit()
        account = await session.get(Account, account.id, populate_existing=True)
        row = email_outbox.queue_receipt(
            session, app[appkeys.ENGINE].notifier, account, outcome, brand="Northwind Cobranzas",
            at=clock.now(), disclosure=await email_outbox.creditor_disclosure(session, account),
        )
        await session.commit()
    assert row is not None
    report = await email_outbox.deliver(database, app[appkeys.ENGINE].notifier, [row.id],
                                        clock=clock)
    assert report.sent == 1
    (receipt,) = app[appkeys.PROVIDERS].email.outbox
    return receipt


async def test_a_paid_receipt_in_spanish_whole(app, client):
    outcome = PaymentOutcome(reference="P-7K3Q", status="paid", amount_cents=5000,
                             method_label="Visa ending 4242", pay_on=None)
    receipt = await spanish_receipt(app, outcome, balance_cents=120000)
    assert (receipt.sender, receipt.subject) == (
        "Northwind Cobranzas <paybot@example.com>", "Su recibo de pago P-7K3Q")
    assert receipt.text == (
        "Northwind Cobranzas\n\nHola, Maria:\n\n"
        "Gracias. Recibimos su pago de $50.00.\n\n"
        "Referencia: P-7K3Q\n"
        "Monto: $50.00\n"
        "Pagado con: Visa terminada en 4242\n"
        "Fecha de pago: 25 nov 2026\n"
        "Estado: Pagado\n"
        "Saldo pendiente: $1,200.00\n"
        "Cuenta: Acme Card ending 4821\n\n"
        # The creditor's disclosure is the default wording: it reads in Spanish too.
        "Esta es una comunicación de un cobrador de deudas.\n\n"
        f"{FOOTER_ES}\n"
    )
    assert visible_text(receipt.html) == (
        "Northwind Cobranzas\nHola, Maria:\n"
        "Gracias. Recibimos su pago de $50.00.\n"
        "| Referencia | P-7K3Q |\n"
        "| Monto | $50.00 |\n"
        "| Pagado con | Visa terminada en 4242 |\n"
        "| Fecha de pago | 25 nov 2026 |\n"
        "| Estado | Pagado |\n"
        "| Saldo pendiente | $1,200.00 |\n"
        "| Cuenta | Acme Card ending 4821 |\n"
        "Esta es una comunicación de un cobrador de deudas.\n"
        f"{FOOTER_ES}"
    )
    card_is_styled(receipt.html)
    assert '<html lang="es">' in receipt.html


async def test_a_scheduled_receipt_in_spanish_with_a_fee_and_the_default_disclosure(app, client):
    async with app[appkeys.DATABASE].session() as session:
        session.add(Creditor(code="northwind", name="Northwind Recovery", disclosure=""))
        await session.commit()
    outcome = PaymentOutcome(reference="P-8M4R", status="scheduled", amount_cents=5000,
                             method_label="Visa ending 4242", pay_on=date(2026, 12, 15),
                             fee_cents=150)
    receipt = await spanish_receipt(app, outcome, balance_cents=125000)
    assert receipt.subject == "Su pago P-8M4R está programado para el 15 dic 2026"
    assert receipt.text == (
        "Northwind Cobranzas\n\nHola, Maria:\n\n"
        "Su pago de $50.00 está programado para el 15 dic 2026: ese día cobraremos a Visa "
        "terminada en 4242. Todavía no se ha cobrado nada.\n\n"
        "Referencia: P-8M4R\n"
        "Monto: $50.00\n"
        "Cargo por servicio: $1.50\n"
        "Total: $51.50\n"
        "Se cobrará a: Visa terminada en 4242\n"
        "Fecha de pago: 15 dic 2026\n"
        "Estado: Pendiente (programado para el 15 dic)\n"
        "Saldo pendiente después de este pago: $1,200.00\n"
        "Cuenta: Acme Card ending 4821\n\n"
        "Esta es una comunicación de un cobrador de deudas.\n\n"
        f"{FOOTER_ES}\n"
    )
    assert visible_text(receipt.html).splitlines()[3:11] == [
        "| Referencia | P-8M4R |",
        "| Monto | $50.00 |",
        "| Cargo por servicio | $1.50 |",
        "| Total | $51.50 |",
        "| Se cobrará a | Visa terminada en 4242 |",
        "| Fecha de pago | 15 dic 2026 |",
        "| Estado | Pendiente (programado para el 15 dic) |",
        "| Saldo pendiente después de este pago | $1,200.00 |",
    ]


@pytest.mark.parametrize("name", ["Acme <evil@example.com>\r\nBcc: x@example.com", ""])
async def test_a_creditor_name_never_becomes_a_header(app, client, name):
    email = app[appkeys.PROVIDERS].email
    await email.send(to="maria@example.com", subject="S", text="t", html="", from_name=name)
    (sent,) = email.outbox
    assert "\n" not in sent.sender and "\r" not in sent.sender
    if not name:
        assert sent.sender == "PayBot <paybot@example.com>"  # the configured sender
    else:
        assert sent.sender.endswith("<paybot@example.com>") and "Bcc" in sent.sender
