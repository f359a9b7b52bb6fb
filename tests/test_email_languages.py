"""Every email in the account's language from one set of templates, and the signed texts'
English unchanged by the catalogs (the hash of what customers already signed still matches)."""

from __future__ import annotations

import hashlib
import re
from datetime import date
from types import SimpleNamespace as Obj

import pytest
from babel.messages.pofile import read_po

from bot.outreach.email_texts import render_email
from bot.outreach.notifications import Notifier
from bot.plans.terms import plan_agreement_text
from bot.providers.email import SandboxEmail
from bot.providers.sms import SandboxSms
from bot.text import i18n
from bot.text.catalogs import po_path
from bot.text.rendering import build_environment
from tests.email_support import visible_text

ENV = build_environment()
ACCOUNT = Obj(first_name="Maria", last_name="Lopez", account_ref="ACME-1001",
              description="Acme Card", balance_cents=120000, language="es")
PLAN_OFFER = Obj(kind="plan", installment_count=6, frequency="monthly", total_cents=125000)
SCHEDULE = [(date(2026, 12, 15), 20834), (date(2027, 1, 15), 20830)]


def payment_text(**changes) -> str:  # type: ignore[no-untyped-def]
    notifier = Notifier(sms=SandboxSms(), email=SandboxEmail(), brand="PayBot", env=ENV)
    values = dict(account=ACCOUNT, amount_cents=5000, pay_on=None,
                  method_label="Visa ending 4242", offer=None, method_kind="card",
                  fee_cents=0, terms_version="2026-11", brand="Northwind Recovery")
    return notifier.agreement_text(**{**values, **changes})


def plan_text(**changes) -> str:  # type: ignore[no-untyped-def]
    values = dict(env=ENV, account=ACCOUNT, offer=None, schedule=SCHEDULE,
                  method_label="Visa ending 4242", method_kind="card",
                  terms_version="2026-11", brand="Northwind Recovery")
    return plan_agreement_text(**{**values, **changes})


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_english_signed_texts_hash_as_they_did_before_the_catalogs():
    """Digests of the texts as rendered before they were marked for translation."""
    with i18n.using("en"):
        assert sha(payment_text()) == (
            "bd078c86b9bef3719963d1dcf56bba40c14bcf3c18ab833887bfbe530cb67603")
        assert sha(payment_text(offer=PLAN_OFFER, pay_on=date(2026, 12, 15),
                                method_kind="us_bank_account")) == (
            "226c5f84f509ec1139c506cb0c96943f2c28b636565a8f30c00017e2a16c47a0")
        assert sha(payment_text(offer=Obj(**{**vars(PLAN_OFFER), "kind": "settlement"}),
                                fee_cents=150)) == (
            "319c729b36832416d50a9268e999ec51f00ca6da6f77f407bc54b466894abbda")
        assert sha(plan_text()) == (
            "0aaa6d1e398d0634535d321ba2505f75fc54a0c5f909ac90067064f06e089cca")
        no_description = Obj(**{**vars(ACCOUNT), "description": ""})
        assert sha(plan_text(account=no_description, schedule=SCHEDULE[:1],
                             method_kind="us_bank_account")) == (
            "f8c3309d3e1c483fa5398f4604d85ced492fa6059df003fd15c938f040a524eb")


def test_the_spanish_payment_authorization_whole_names_the_creditor():
    with i18n.using("es"):
        text = payment_text(pay_on=date(2026, 12, 15), fee_cents=150)
        assert payment_text(pay_on=date(2026, 12, 15), fee_cents=150) == text  # one hash
    assert text == (
        "Autorización de pago (versión de los términos 2026-11)\n\n"
        "Yo, Maria Lopez, autorizo a Northwind Recovery a cobrar\n"
        "$50.00 más un cargo por servicio de $1.50 (total $51.50) el 15 dic 2026\n"
        "a Visa terminada en 4242 por la cuenta ACME-1001.\n\n"
        "Puedo revocar esta autorización para cualquier pago aún no realizado comunicándome con "
        "Northwind Recovery\n"
        "al menos tres días hábiles antes de su vencimiento. Acepto recibir esta autorización,\n"
        "los recibos y los avisos en forma electrónica; puedo pedir una copia en papel sin costo."
    )
    assert "PayBot" not in text


PAYMENT = Obj(reference="P-7K3Q", amount_cents=5000, fee_cents=0,
              scheduled_for=date(2026, 12, 15), refunded_cents=2000)
AGREEMENT = Obj(signer_name="Maria Lopez", terms_version="2026-11", text="Acuerdo\n\nTexto.",
                text_sha256="ab" * 32)
CAMPAIGN = dict(brand="Northwind Recovery", first_name="Maria", support_contact="1-800-555-0100",
                disclosure="Esta es una comunicación de un cobrador de deudas.",
                link_url="https://pay.example/p/X", expires="31 dic 2026", due_on=None,
                balance_cents=125000, description="Acme Card", offer_kind="plan",
                total_cents=125000, installment_count=6, installment_cents=20834,
                odd_cents=20830, odd_position="last", first_on=date(2026, 12, 15),
                schedule=SCHEDULE, expires_on=date(2026, 12, 31), days_left=3)
RECEIPT = dict(brand="Northwind Recovery", account=ACCOUNT, account_label="Acme Card",
               reference="P-7K3Q", amount_cents=5000, fee_cents=150, total_cents=5150,
               method_label="Visa terminada en 4242", day=date(2026, 12, 15),
               remaining_cents=120000, settles=False, installments=1,
               disclosure="Esta es una comunicación de un cobrador de deudas.")
EMAILS = {
    "receipt paid": ("receipt", {**RECEIPT, "status": "paid"}),
    "receipt pending": ("receipt", {**RECEIPT, "status": "pending"}),
    "receipt scheduled": ("receipt", {**RECEIPT, "status": "scheduled", "installments": 3}),
    "decline": ("decline", dict(brand="Northwind Recovery", account=ACCOUNT,
                                account_label="Acme Card", reference="P-7K3Q",
                                amount_cents=5000, method_label="Visa terminada en 4242",
                                reason="", disclosure="Esta es una comunicación.",
                                update_url="https://pay.example/p/U")),
    # disclosure "": the creditor has none, the default (in Spanish) stands in
    "payment canceled": ("payment_canceled", dict(brand="N", account=ACCOUNT, payment=PAYMENT,
                                                  disclosure="")),
    "plan canceled": ("plan_canceled", dict(brand="N", account=ACCOUNT, canceled=[1, 2],
                                            canceled_total=40000, disclosure="")),
    "plan paid": ("plan_paid", dict(brand="N", account=ACCOUNT, paid_cents=120000,
                                    canceled=[1], disclosure="")),
    "refund": ("refund", dict(brand="N", account=ACCOUNT, payment=PAYMENT,
                              refund=Obj(amount_cents=2000, status="pending"),
                              method_label="Visa ending 4242", disclosure="")),
    "plan agreement": ("plan_agreement", dict(
        brand="N", account=ACCOUNT, account_label="Acme Card", agreement=AGREEMENT,
        schedule=SCHEDULE, schedule_lines=["1. 15 dic 2026: $208.34"], total_cents=41664,
        method_label="Visa terminada en 4242", how_signed="respuesta por mensaje de texto",
        signed_utc="2026-11-25 15:00:00 UTC", signed_local="25 nov 2026 10:00 AM EST",
        agreement_ref="AG-000042")),
    "link": ("link", {**CAMPAIGN, "due_on": date(2026, 12, 20)}),
    "plan offer": ("offer", CAMPAIGN),
    "settlement offer": ("offer", {**CAMPAIGN, "offer_kind": "settlement"}),
    "reminder": ("reminder", CAMPAIGN),
    "offer expired": ("offer_expired", CAMPAIGN),
}


def english_phrases() -> list[str]:
    """The English words of every email text (placeholders cut out), long enough to be sure a
    Spanish email would never contain them."""
    with po_path("es", "email").open("rb") as handle:
        catalog = read_po(handle)
    phrases = []
    for message in catalog:
        ids = [message.id] if isinstance(message.id, str) else list(message.id)
        for msgid in ids:
            phrases += [p.strip() for p in re.split(r"%\(\w+\)[sd]|<[^>]+>", msgid)
                        if len(p.strip()) >= 14]
    return phrases


@pytest.mark.parametrize("kind", list(EMAILS))
def test_every_email_reads_in_spanish_in_the_shared_card(kind):
    name, context = EMAILS[kind]
    message = render_email(ENV, name, context, language="es")
    read = "\n".join([message["subject"], message["text"], visible_text(message["html"])])
    left = [phrase for phrase in english_phrases() if phrase in read]
    assert left == [], f"{kind}: English left in the Spanish email"
    assert '<html lang="es">' in message["html"] and "max-width: 600px" in message["html"]
    assert "\n\n\n" not in message["text"] and message["text"].endswith("\n")
    if context.get("disclosure") == "":
        assert "Esta es una comunicación de un cobrador de deudas." in message["text"]
    english = render_email(ENV, name, context, language="en")
    assert english["subject"] != message["subject"] and '<html lang="en">' in english["html"]


def test_a_decline_notice_in_spanish_whole():
    name, context = EMAILS["decline"]
    message = render_email(ENV, name, {**context, "reason": "El pago fue rechazado."},
                           language="es")
    assert message["subject"] == "Su pago P-7K3Q no se procesó"
    assert message["text"] == (
        "Northwind Recovery\n\nHola, Maria:\n\n"
        "Su pago de $50.00 no se procesó. El pago fue rechazado.\n\n"
        "Referencia: P-7K3Q\n"
        "Monto: $50.00\n"
        "Método de pago: Visa terminada en 4242\n"
        "Estado: Rechazado\n"
        "Cuenta: Acme Card\n\n"
        "Actualice su método de pago:\n"
        "https://pay.example/p/U\n\n"
        "Un enlace seguro solo para usted. Allí puede elegir otro método guardado o agregar una "
        "tarjeta para los pagos que faltan, y pagar el monto pendiente. O responda PAGAR a nuestro "
        "mensaje de texto.\n\n"
        "Esta es una comunicación.\n\n"
        "¿Preguntas? Responda AGENTE a nuestros mensajes de texto.\n"
        "Para dejar de recibir correos, responda a este mensaje con UNSUBSCRIBE.\n"
    )
    assert visible_text(message["html"]).splitlines()[2:9] == [
        "Su pago de $50.00 no se procesó. El pago fue rechazado.",
        "| Referencia | P-7K3Q |",
        "| Monto | $50.00 |",
        "| Método de pago | Visa terminada en 4242 |",
        "| Estado | Rechazado |",
        "| Cuenta | Acme Card |",
        "| Actualice su método de pago <https://pay.example/p/U> |",  # the button
    ]


def test_when_a_link_stops_working_is_worded_in_the_emails_language():
    from datetime import UTC, datetime

    from bot.outreach.campaigns import format_local_time

    # Built before any language is set, as the outreach queue builds it; worded when rendered.
    expires = format_local_time(datetime(2027, 1, 1, 4, 59, tzinfo=UTC), "America/New_York")
    context = {**CAMPAIGN, "expires": expires, "due_on": date(2026, 12, 20)}
    lines = {
        language: [line for line in render_email(ENV, "link", context, language=language)[
            "text"].splitlines() if "2026" in line and ("11:59" in line)]
        for language in ("en", "es")
    }
    assert lines["en"] == ["The link opens your account directly, so please do not forward this "
                           "email. It works until Dec 31, 2026 at 11:59 PM EST."]
    assert lines["es"] == ["El enlace abre su cuenta directamente; por favor, no reenvíe este "
                           "correo. Funciona hasta el 31 dic 2026 a las 11:59 PM EST."]
