"""The portal's smaller guarantees: the CSP admits Stripe (and nothing else of a third party),
what a customer or creditor typed is escaped in every page and email, and a method id of another
account is answered exactly like an id that does not exist."""

from __future__ import annotations

from portal_fallback.app import content_security_policy
from tests.seed import add_account
from tests.test_portal import Browser, link_for

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
