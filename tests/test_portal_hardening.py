"""The portal's smaller guarantees: the CSP admits Stripe (and nothing else of a third party),
what a customer or creditor typed is escaped in every page and email, and a method id of another
account is answered exactly like an id that does not exist."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger import queries as ledger
from bot.ledger.models import Creditor, PaymentMethod
from bot.outreach.campaigns import email_environment
from bot.outreach.notifications import Notifier
from bot.providers.email import SandboxEmail
from bot.providers.sms import SandboxSms
from bot.text.rendering import build_environment
from portal_fallback.app import build_pages, content_security_policy
from tests.seed import CONFIRM_STEPS, add_account
from tests.test_portal import Browser, csrf_of, link_for
from tests.test_signing import add_plan_offer

# What Stripe documents for Stripe.js, Elements and 3-D Secure
# (https://docs.stripe.com/security/guide#content-security-policy), and only our own otherwise.
STRIPE_CSP = (
    "default-src 'self'; "
    "script-src 'self' https://*.js.stripe.com https://js.stripe.com; "
    "frame-src https://*.js.stripe.com https://js.stripe.com https://hooks.stripe.com; "
    "connect-src 'self' https://api.stripe.com; "
    "img-src 'self' data:; "
    "style-src 'self'; "
    "form-action 'self'; "
    "frame-ancestors 'none'; "
    "base-uri 'none'; "
    "object-src 'none'"
)


async def test_the_portal_csp_admits_stripe_js_elements_and_3ds_and_nothing_more(
    app, client, phone
):
    await add_account(app)
    browser = Browser(client)
    await browser.get(await link_for(app, phone))
    response = await client.get("/portal/pay")
    assert response.headers["Content-Security-Policy"] == STRIPE_CSP


def test_a_local_stripe_js_origin_is_added_where_stripe_js_runs():
    local = "http://127.0.0.1:8420"
    assert content_security_policy(f"{local}/js.stripe.com/v3/") == (
        "default-src 'self'; "
        f"script-src 'self' https://*.js.stripe.com https://js.stripe.com {local}; "
        "frame-src https://*.js.stripe.com https://js.stripe.com https://hooks.stripe.com "
        f"{local}; "
        f"connect-src 'self' https://api.stripe.com {local}; "
        "img-src 'self' data:; "
        "style-src 'self'; "
        "form-action 'self'; "
        "frame-ancestors 'none'; "
        "base-uri 'none'; "
        "object-src 'none'"
    )


# --- escaping: a creditor's name (or anything typed) is text in HTML, never markup ---

HOSTILE = "<b>Acme & Co</b><script>alert(1)</script>"
ESCAPED = "&lt;b&gt;Acme &amp; Co&lt;/b&gt;&lt;script&gt;alert(1)&lt;/script&gt;"


async def rename_creditor(app, name: str) -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        creditor = await session.get(Creditor, "northwind")
        creditor.name = name  # type: ignore[union-attr]
        await session.commit()


async def test_the_code_email_shows_the_creditor_name_as_text(app, client):
    account = await add_account(app, phone=None)
    email = SandboxEmail()
    notifier = Notifier(sms=SandboxSms(), email=email, brand="PayBot")
    await notifier.send_code(account, "123456", brand=HOSTILE, by_sms=True)
    (sent,) = email.outbox
    assert sent.html == (
        f"<p>{ESCAPED}: Your verification code is 123456. It expires in 10 minutes. "
        "If you did not ask for it, ignore this message.</p>"
    )
    assert sent.text.startswith(f"{HOSTILE}: Your verification code is 123456.")


async def test_a_receipt_email_shows_the_creditor_name_as_text(app, phone, providers):
    await add_account(app)
    await rename_creditor(app, HOSTILE)
    maria = phone()
    for text in CONFIRM_STEPS:
        await maria.send(text)
    await maria.send("agree")
    (receipt,) = [m for m in providers.email.outbox if "receipt" in m.subject]
    assert ESCAPED in receipt.html
    assert "<b>" not in receipt.html and "<script" not in receipt.html


async def test_a_portal_page_shows_the_creditor_name_as_text(app, client, phone):
    await add_account(app)
    await rename_creditor(app, HOSTILE)
    browser = Browser(client)
    html = await browser.get(await link_for(app, phone))
    assert f'<span class="brand">{ESCAPED}</span>' in html
    assert "<b>" not in html and "<script" not in html


def test_every_html_template_environment_escapes_and_text_stays_text():
    for env in (build_environment(), email_environment(), build_pages()):
        assert env.autoescape("email/receipt.html") if callable(env.autoescape) else env.autoescape
    text = build_environment().from_string("{{ brand }}").render(brand=HOSTILE)
    assert text == HOSTILE  # an SMS is not HTML: nothing to escape there


# --- a method id of another account is answered like one that does not exist ---


async def method_link(app, account_id: int) -> str:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        token = await ledger.create_link(
            session,
            account_id=account_id,
            at=app[appkeys.CLOCK].now(),
            lifetime=timedelta(days=7),
            purpose="update_method",
        )
        await session.commit()
    return f"/p/{token}"


async def someone_elses_method(app) -> int:  # type: ignore[no-untyped-def]
    other = await add_account(
        app, ref="ACC-2002", phone="+15555550199", email="sam@example.com"
    )
    async with app[appkeys.DATABASE].session() as session:
        found = await session.scalar(
            select(PaymentMethod.id).where(PaymentMethod.account_id == other.id)
        )
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("opening", "choose"), [("method_update", "/portal/method"), ("plan", "/portal/plan/method")]
)
async def test_a_foreign_method_id_gets_the_same_answer_as_an_unknown_one(
    app, client, opening, choose
):
    maria = await add_account(app)
    theirs = await someone_elses_method(app)
    if opening == "plan":
        _, link = await add_plan_offer(app, maria.id)
    else:
        link = await method_link(app, maria.id)
    browser = Browser(client)
    await browser.get(link)
    if opening == "plan":
        await browser.post("/portal/plan/start", {})
    form = browser.html
    answers = []
    for method in (str(theirs), "987654"):
        browser.html = form
        response = await client.post(choose, data={"csrf_token": csrf_of(form), "method": method})
        answers.append((response.status, await response.text()))
    assert answers[0] == answers[1]
    assert answers[0][0] == 422 and "Please choose how you will pay." in answers[0][1]
