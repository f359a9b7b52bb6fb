"""Signing a plan offer on the web: review, method, terms and E-SIGN consent, a typed or drawn
signature, the confirmation, and the signed copy by email with its PDF."""

from __future__ import annotations

import base64
import io
import re
import zlib
from datetime import date, datetime, timedelta

import pytest
from aiohttp import CookieJar
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from bot import appkeys
from bot.app import create_app
from bot.ledger import queries as ledger
from bot.ledger.models import Agreement, Link, Offer, Outreach, Payment, Plan
from bot.plans.signing import agreement_digest
from bot.providers import Providers
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms
from portal_fallback.history import agreement_reference
from tests.conftest import START
from tests.seed import add_account
from tests.test_portal import Browser, csrf_of, visible_text

SCHEDULE = [("2026-12-01", 40000), ("2027-01-01", 40000), ("2027-02-01", 45000)]
TOTAL = 125000


async def add_plan_offer(
    app,  # type: ignore[no-untyped-def]
    account_id: int,
    *,
    expires_at: datetime | None = START + timedelta(days=7),
    status: str = "open",
) -> tuple[int, str]:
    """A plan offer and its "Complete Payment Agreement" link, the way outreach makes them."""
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        offer = Offer(
            account_id=account_id,
            kind="plan",
            total_cents=sum(c for _, c in SCHEDULE),
            installment_count=len(SCHEDULE),
            frequency="monthly",
            schedule=[list(i) for i in SCHEDULE],
            expires_at=expires_at,
            status=status,
            created_at=now,
        )
        session.add(offer)
        await session.flush()
        token = await ledger.create_link(
            session,
            account_id=account_id,
            at=now,
            lifetime=timedelta(days=7),
            purpose="plan_offer",
            offer_id=offer.id,
        )
        await session.commit()
        return offer.id, f"/p/{token}"


def drawn_png(*, ink: bool = True, size: tuple[int, int] = (600, 200)) -> str:
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    if ink:
        pen = ImageDraw.Draw(image)
        pen.line(
            [(40, 150), (120, 40), (200, 160), (300, 60), (420, 150), (540, 70)],
            fill=(23, 32, 42, 255),
            width=4,
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pdf_text(pdf: bytes) -> str:
    """The page text of an fpdf2 PDF: its content streams, inflated."""
    assert pdf.startswith(b"%PDF")
    chunks = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            chunks.append(zlib.decompress(stream))
        except zlib.error:
            chunks.append(stream)
    return b" ".join(chunks).decode("latin-1")


async def signed_up_to_signature(browser: Browser, link: str) -> None:
    await browser.get(link)
    assert "Complete Payment Agreement" in browser.text
    await browser.post("/portal/plan/start", {})
    assert "Payment method" in browser.text and "Visa ending 4242" in browser.text
    method = re.search(r'name="method" value="(\d+)"', browser.html)
    assert method
    await browser.post("/portal/plan/method", {"method": method.group(1)})
    assert "Terms and Conditions" in browser.text
    await browser.post("/portal/plan/terms", {"esign_consent": "yes", "accept": "yes"})
    assert "Choose how to sign" in browser.text


async def ledger_plans(app):  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        plans = list(await session.scalars(select(Plan)))
        payments = list(await session.scalars(select(Payment).order_by(Payment.scheduled_for)))
        agreements = list(await session.scalars(select(Agreement)))
        return plans, payments, agreements


async def test_the_review_shows_the_plan_in_the_customers_words(app, client):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await browser.get(link)
    text = browser.text
    assert "Complete Payment Agreement" in text and "Get Started" in text
    assert "Northwind Recovery" in text and "Acme Card ending 4821" in text
    assert "Dec 1, 2026 $400.00" in text and "Feb 1, 2027 $450.00" in text
    assert "Total $1,250.00" in text
    assert "Balance after the last payment: $0.00" in text
    assert len(browser.html) < 8000


async def test_a_typed_signature_signs_the_plan_and_emails_the_copy(app, client, providers):
    account = await add_account(app)
    offer_id, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    await browser.post("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})

    text = browser.text
    assert "Your payment plan is set up" in text
    assert "A copy is on its way to m***@example.com" in text
    assert "Maria Lopez" in text and 'class="typed-signature"' in browser.html
    plans, payments, agreements = await ledger_plans(app)
    (plan,) = plans
    first, second, third = (p.reference for p in payments)
    reference = agreement_reference(agreements[0])
    # A short reference a person can read out, never the SHA-256 (kept in the record).
    assert re.fullmatch(r"A-[0-9A-HJKMNP-TV-Z]{6}", reference)
    assert agreements[0].text_sha256 not in browser.html
    main = text.split(" Your payment plan is set up ", 1)[1]
    assert main == (
        "Thank you, Maria Lopez. Your agreement is signed. A copy is on its way to "
        "m***@example.com. Creditor Northwind Recovery Account Acme Card ending 4821 "
        f"Plan PL-{plan.id:06d} Agreement {reference} Charged to Visa ending 4242 "
        "Signed Nov 25, 2026 10:00 AM EST Payment schedule Payment schedule # Date Amount "
        f"Reference Status 1 Dec 1, 2026 $400.00 {first} Pending (scheduled for Dec 1) "
        f"2 Jan 1, 2027 $400.00 {second} Pending (scheduled for Jan 1) "
        f"3 Feb 1, 2027 $450.00 {third} Pending (scheduled for Feb 1) Total $1,250.00 "
        f"Signature Maria Lopez Terms version 2026-11, agreement {reference} Print "
        "Your payments Questions? support@paybot.example. Secure payments processed by Stripe."
    )

    assert plan.offer_id == offer_id and plan.total_cents == TOTAL
    assert [(p.scheduled_for, p.amount_cents, p.status, p.channel) for p in payments] == [
        (date(2026, 12, 1), 40000, "scheduled", "web"),
        (date(2027, 1, 1), 40000, "scheduled", "web"),
        (date(2027, 2, 1), 45000, "scheduled", "web"),
    ]
    (agreement,) = agreements
    assert agreement.signature_kind == "typed" and agreement.signature_data == "Maria Lopez"
    assert agreement.channel == "web" and agreement.signer_name == "Maria Lopez"
    assert agreement.ip_address == "127.0.0.1" and agreement.user_agent
    assert agreement.esign_consent_at == START
    assert agreement.text_sha256 == agreement_digest(agreement.text)
    assert "Dec 1, 2026: $400.00" in agreement.text and "E-SIGN" in agreement.text
    async with app[appkeys.DATABASE].session() as session:
        offer = await session.get(Offer, offer_id)
        assert offer.status == "accepted" and offer.accepted_at == START

    (email,) = providers.email.outbox
    assert email.to == "maria@example.com"
    assert "signed payment plan agreement" in email.subject
    assert "Dec 1, 2026: $400.00" in email.text and "Maria Lopez" in email.text
    assert "$1,250.00" in email.html and f"AG-{agreement.id:06d}" in email.html
    assert agreement.text_sha256 not in email.html  # a short reference, not a hash
    (attachment,) = email.attachments
    assert attachment.content_type == "application/pdf"
    assert attachment.filename == f"AG-{agreement.id:06d}.pdf"
    pdf = pdf_text(attachment.data)
    assert "Maria Lopez" in pdf and "Dec 1, 2026: $400.00" in pdf
    assert agreement.text_sha256 in pdf and "127.0.0.1" in pdf
    assert "2026-11-25 15:00:00 UTC" in pdf and "10:00 AM EST" in pdf
    assert email.path is not None and email.path.exists()  # the .eml in the sandbox outbox
    number = email.path.name.split("-", 1)[0]
    (beside,) = email.path.parent.glob(f"{number}-*.pdf")  # and the PDF beside it
    assert beside.read_bytes() == attachment.data


async def test_a_drawn_signature_is_kept_as_the_image(app, client, providers):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    image = drawn_png()
    await browser.post("/portal/plan/sign", {"kind": "drawn", "signature_data": image})
    assert "Your payment plan is set up" in browser.text
    assert f'src="{image}"' in browser.html

    _, payments, (agreement,) = await ledger_plans(app)
    assert len(payments) == 3
    assert agreement.signature_kind == "drawn" and agreement.signature_data == image
    assert agreement.signer_name == "Maria Lopez"
    (email,) = providers.email.outbox
    pdf = email.attachments[0].data
    assert b"/Subtype /Image" in pdf  # the drawing is embedded in the PDF


async def test_refusals_change_nothing(app, client, providers):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await browser.get(link)
    # No CSRF token: refused before anything is looked at.
    response = await client.post("/portal/plan/start", data={})
    assert response.status == 403
    await browser.post("/portal/plan/start", {})
    method = re.search(r'name="method" value="(\d+)"', browser.html).group(1)
    await browser.post("/portal/plan/method", {"method": "999"}, status=422)
    assert "Please choose how you will pay" in browser.text
    await browser.post("/portal/plan/method", {"method": method})
    # The E-SIGN consent box is required.
    await browser.post("/portal/plan/terms", {"accept": "yes"}, status=422)
    assert "Please tick both boxes" in browser.text
    # The signing page is not reachable before consent.
    await browser.get("/portal/plan/sign")
    assert "Terms and Conditions" in browser.text
    await browser.post("/portal/plan/terms", {"esign_consent": "yes", "accept": "yes"})

    refused = [
        ({"kind": "drawn", "signature_data": ""}, "Please draw your signature"),
        ({"kind": "drawn", "signature_data": drawn_png(ink=False)}, "looks empty"),
        ({"kind": "drawn", "signature_data": "data:image/png;base64,aGVsbG8="}, "not be read"),
        (
            {"kind": "drawn", "signature_data": "data:image/svg+xml;base64,PHN2Zz4="},
            "could not be read",
        ),
        ({"kind": "drawn", "signature_data": "data:image/png;base64,!!!"}, "could not be read"),
        ({"kind": "drawn", "signature_data": drawn_png(size=(3000, 1000))}, "too large"),
        ({"kind": "typed", "signer_name": "   "}, "Please type your full name"),
        ({"kind": "typed", "signer_name": "x" * 200}, "characters or fewer"),
        ({"kind": "typed", "signer_name": "Somebody Else"}, "name of the account holder"),
        ({"kind": "stamp"}, "Please type your name or draw"),
    ]
    for form, message in refused:
        await browser.post("/portal/plan/sign", form, status=422)
        assert message in browser.text, (form.get("kind"), browser.text[:300])
    big = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 46_500).decode()
    await browser.post("/portal/plan/sign", {"kind": "drawn", "signature_data": big}, status=422)
    assert "too large" in browser.text

    assert await ledger_plans(app) == ([], [], [])
    assert providers.email.outbox == []


async def test_an_expired_offer_answers_410_with_what_to_do(app, client, clock):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id, expires_at=START + timedelta(minutes=10))
    browser = Browser(client)
    await browser.get(link)
    await browser.post("/portal/plan/start", {})
    clock.advance(timedelta(minutes=15))
    # Mid-flow: the next step says it is over.
    await browser.get("/portal/plan/method", status=410)
    assert "has expired" in browser.text and "LINK" in browser.text
    # And the link itself.
    await Browser(client).get(link, status=410)
    assert await ledger_plans(app) == ([], [], [])


async def test_a_withdrawn_offer_answers_410(app, client):
    account = await add_account(app)
    offer_id, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    async with app[appkeys.DATABASE].session() as session:
        (await session.get(Offer, offer_id)).status = "withdrawn"
        await session.commit()
    await browser.post(
        "/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"}, status=410
    )
    assert "was withdrawn" in browser.text
    fresh = Browser(client)
    await fresh.get(link, status=410)
    assert "was withdrawn" in fresh.text
    assert await ledger_plans(app) == ([], [], [])


async def test_an_expired_or_revoked_link_answers_410(app, client):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    async with app[appkeys.DATABASE].session() as session:
        (await session.scalar(select(Link))).revoked_at = START
        await session.commit()
    await Browser(client).get(link, status=410)


async def test_signed_already_shows_the_plan_and_signs_nothing_twice(app, client, providers):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    sign_page = browser.html
    await browser.post("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})
    # The same form sent again (a double tap, the back button): the plan already made.
    browser.html = sign_page
    await browser.post("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})
    assert "Your payment plan is set up" in browser.text
    # The link opened again: its purpose is done (410), and it says so; no second signing.
    again = Browser(client)
    await again.get(link, status=410)
    assert "your payment plan is set up" in again.text and "Get Started" not in again.text

    plans, payments, agreements = await ledger_plans(app)
    assert len(plans) == 1 and len(payments) == 3 and len(agreements) == 1
    assert len(providers.email.outbox) == 1
    async with app[appkeys.DATABASE].session() as session:
        copies = await session.scalar(
            select(func.count()).select_from(Outreach).where(Outreach.kind == "agreement_copy")
        )
        assert copies == 1


async def test_a_card_added_while_signing_is_the_plans_method(app, client):
    account = await add_account(app, methods=())
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await browser.get(link)
    await browser.post("/portal/plan/start", {})
    assert 'name="method"' not in browser.html and "Add a card" in browser.text
    await browser.post("/portal/plan/methods", {"payment_method": "pm_card_visa"})
    assert "Terms and Conditions" in browser.text and "Visa ending 4242" in browser.text
    await browser.post("/portal/plan/terms", {"esign_consent": "yes", "accept": "yes"})
    await browser.post("/portal/plan/sign", {"kind": "typed", "signer_name": "Maria Lopez"})
    (plan,), payments, _ = await ledger_plans(app)
    assert plan.method_id is not None and {p.method_id for p in payments} == {plan.method_id}


async def test_pages_are_small_and_strictly_secured(app, client):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    response = await client.get("/portal/plan/sign")
    html = await response.text()
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "<script>" not in html and "style=" not in html and 'src="/static/signature.js"' in html
    assert len(html) < 6000
    assert csrf_of(html) and "maria@example.com" not in visible_text(html)


# --- the real sendgrid SDK against the local fake ---


@pytest.fixture
async def sendgrid_client(settings, clock, sendgrid_email, aiohttp_client, aiohttp_server):  # type: ignore[no-untyped-def]
    providers = Providers(sms=SandboxSms(), email=sendgrid_email, payments=SandboxGateway())
    app = create_app(settings, providers, clock)
    server = await aiohttp_server(app)
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = await aiohttp_client(server, cookie_jar=jar)
    yield app, client
    await providers.close()


async def test_the_copy_goes_through_sendgrid_with_the_pdf(sendgrid_client, sendgrid_fake):
    app, client = sendgrid_client
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    await browser.post("/portal/plan/sign", {"kind": "drawn", "signature_data": drawn_png()})
    assert "A copy is on its way" in browser.text

    body = sendgrid_fake.last
    assert body["personalizations"][0]["to"][0]["email"] == "maria@example.com"
    assert "Feb 1, 2027: $450.00" in sendgrid_fake.content(body, "text/plain")
    ((filename, content_type, data),) = sendgrid_fake.attachments(body)
    assert filename.startswith("AG-") and content_type == "application/pdf"
    text = pdf_text(data)
    assert "Maria Lopez" in text and "Feb 1, 2027: $450.00" in text
    assert "signature drawn on the web" in text


async def test_a_tampered_progress_cookie_counts_for_nothing(app, client):
    account = await add_account(app)
    _, link = await add_plan_offer(app, account.id)
    browser = Browser(client)
    await signed_up_to_signature(browser, link)
    jar = client.session.cookie_jar
    (cookie,) = [c for c in jar if c.key == "paybot_plan"]
    payload, _, mac = cookie.value.partition(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload).replace(b'"m":1', b'"m":2')
    ).decode()
    assert forged != payload
    jar.update_cookies(
        {"paybot_plan": f"{forged}.{mac}"}, response_url=client.make_url("/portal/plan")
    )
    await browser.get("/portal/plan/sign")
    assert "Payment method" in browser.text  # back to choosing: nothing carried over


def test_the_agreement_text_states_each_payment_and_the_bank_wording():
    from types import SimpleNamespace

    from bot.plans.terms import plan_agreement_text, plan_summary_lines
    from bot.text.rendering import build_environment

    holder = SimpleNamespace(
        account_ref="ACC-1001",
        description="Acme Card ending 4821",
        first_name="Maria",
        last_name="Lopez",
    )
    schedule = [(date.fromisoformat(day), cents) for day, cents in SCHEDULE]

    def text(kind: str | None) -> str:
        return plan_agreement_text(
            env=build_environment(),
            account=holder,
            offer=None,
            schedule=schedule,
            method_label="Bank account ending 6789",
            method_kind=kind,
            terms_version="2026-11",
            brand="Northwind Recovery",
        )

    bank = text("us_bank_account")
    assert bank == text("us_bank_account")  # deterministic: its hash is the agreement's
    for line in plan_summary_lines(schedule):
        assert line in bank
    assert "Total: $1,250.00" in bank and "NACHA WEB" in bank and "revoke" in bank
    assert "paper copy" in bank and "withdraw my consent" in bank and "PDF" in bank
    assert "NACHA" not in text("card")
