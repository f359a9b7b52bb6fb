"""The signed agreement's PDF: its signature block is never split across pages, wherever the
agreement's length puts it, and a Spanish account's copy reads in Spanish, accents included
(fpdf2's core fonts are Latin-1: á é í ó ú ñ ¿ ¡ are all there). The pages are read from fpdf2's
own content streams (no PDF reader is installed here): which page holds which line."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest

from bot.ledger.models import Account, Agreement, Payment, PaymentMethod, Plan
from bot.plans.agreement_copy import SignedPlan, agreement_document, agreement_pdf
from bot.plans.signing import agreement_digest

SIGNED_AT = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def signed_plan(*, language: str = "en", extra_lines: int = 0,
                text: str | None = None) -> SignedPlan:
    account = Account(id=1, account_ref="ACC-1001", first_name="María", last_name="Núñez",
                      description="Acme Card", timezone="America/New_York", language=language,
                      balance_cents=125000)
    body = text or "Payment plan agreement\n\n" + "\n".join(
        f"{n}. A clause of the agreement that fills one line of the page." for n in
        range(1, extra_lines + 1))
    agreement = Agreement(
        id=42, plan_id=7, account_id=1, terms_version="2026-11", text=body,
        text_sha256=agreement_digest(body), signer_name="María Núñez", signature_kind="typed",
        signature_data="María Núñez", signed_at=SIGNED_AT, esign_consent_at=SIGNED_AT,
        ip_address="127.0.0.1", user_agent="Mozilla/5.0", channel="web",
    )
    installments = [
        Payment(reference=f"P-{n}", installment_number=n, scheduled_for=date(2026, 11 + n, 1)
                if n == 1 else date(2027, n - 1, 1), amount_cents=20834)
        for n in range(1, 4)
    ]
    method = PaymentMethod(brand="Visa", last4="4242", kind="card")
    return SignedPlan(Plan(id=7), account, agreement, installments, method)


SIGNATURE_LINES = ("Signature", "Signed by: ", "How: ", "When: ", "Consent to electronic",
                   "IP address: ", "Device: ", "Terms version: ", "SHA-256 of the agreement",
                   "María Núñez")  # the typed signature itself, last


def drawn_lines(pdf) -> dict[int, list[str]]:  # type: ignore[no-untyped-def]
    """Each page's text lines, in the order drawn (fpdf2 writes `(text) Tj`, Latin-1)."""
    found = {}
    for number, page in pdf.pages.items():
        strings = re.findall(rb"\((.*?)(?<!\\)\) Tj", bytes(page.contents))
        found[number] = [re.sub(rb"\\([()\\])", rb"\1", raw).decode("latin-1")
                         for raw in strings]
    return found


def page_of(lines: dict[int, list[str]], start: str) -> list[int]:
    return [n for n, texts in lines.items() if any(t.startswith(start) for t in texts)]


@pytest.mark.parametrize("extra_lines", range(20, 80))
def test_the_signature_block_stays_on_one_page(extra_lines):
    """From 20 to 80 clauses the block meets the page's end at every offset; it always moves
    to the next page whole."""
    pdf = agreement_document(signed_plan(extra_lines=extra_lines), brand="Northwind Recovery",
                             compress=False)
    lines = drawn_lines(pdf)
    where = {start: page_of(lines, start) for start in SIGNATURE_LINES}
    assert len({tuple(pages) for pages in where.values()}) == 1, where
    (page,) = where["Signature"]
    signature = lines[page][lines[page].index("Signature"):]
    # (a long hash may wrap onto a line of its own)
    assert [line.split(":")[0] for line in signature if not re.fullmatch("[0-9a-f]+", line)] == [
        "Signature", "Signed by", "How", "When", "Consent to electronic records", "IP address",
        "Device", "Terms version", "SHA-256 of the agreement text", "María Núñez",
    ]
    assert page_of(lines, f"{extra_lines}. A clause") in ([page], [page - 1])


def test_a_short_agreement_is_one_page_with_its_signature():
    pdf = agreement_document(signed_plan(extra_lines=3), brand="Northwind Recovery",
                             compress=False)
    assert list(drawn_lines(pdf)) == [1]


def test_a_spanish_copy_reads_in_spanish_accents_included():
    text = ("Acuerdo de plan de pagos y autorización de pagos recurrentes\n\n"
            "Yo, María Núñez, acepto pagar $625.02 en 3 pagos. ¿Preguntas? ¡Llámenos!")
    signed = signed_plan(language="es", text=text)
    pdf = agreement_document(signed, brand="Northwind Cobranzas", compress=False)
    assert drawn_lines(pdf) == {1: [
        "Northwind Cobranzas",
        "Acuerdo de plan de pagos firmado AG-000042 (plan 7)",
        "Calendario de pagos",
        "1. 1 dic 2026: $208.34 (referencia P-1)",
        "2. 1 ene 2027: $208.34 (referencia P-2)",
        "3. 1 feb 2027: $208.34 (referencia P-3)",
        "Total: $625.02, cobrado a Visa terminada en 4242",
        "Acuerdo y autorización tal como se firmaron",
        "Acuerdo de plan de pagos y autorización de pagos recurrentes",
        "Yo, María Núñez, acepto pagar $625.02 en 3 pagos. ¿Preguntas? ¡Llámenos!",
        "Firma",
        "Firmado por: María Núñez",
        "Cómo: nombre escrito, en la web",
        "Cuándo: 2026-11-25 15:00:00 UTC (25 nov 2026 10:00 AM EST)",
        "Consentimiento para registros electrónicos: 2026-11-25 15:00:00 UTC",
        "Dirección IP: 127.0.0.1",
        "Dispositivo: Mozilla/5.0",
        "Versión de los términos: 2026-11",
        f"SHA-256 del texto del acuerdo: {signed.agreement.text_sha256}",
        "María Núñez",
    ]}
    assert agreement_pdf(signed, brand="Northwind Cobranzas").startswith(b"%PDF")
