"""The customer portal: the web renderer of the same flows the SMS conversation drives.

Root routes: `GET /p/{token}` (a personalized link opens a fresh session), `GET /t/{version}`
(the terms), `/static/`. The `/portal/` sub-app has its own middlewares: security headers, the
session, CSRF on every form.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys, logs
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Link
from bot.money import format_cents
from bot.text import i18n
from bot.text.i18n import N_
from portal_fallback import audience, link_scope, sessions
from portal_fallback.audience import BRAND
from portal_fallback.sessions import SESSION

log = logging.getLogger(__name__)

PAGES = web.AppKey("portal_pages", Environment)
STATIC = Path(__file__).parent / "static"


def build_pages() -> Environment:
    env = Environment(
        loader=PackageLoader("portal_fallback", "templates"),
        autoescape=select_autoescape(),
        auto_reload=False,  # packaged templates do not change under a running process
    )
    env.filters["money"] = format_cents
    return i18n.install(env)  # `{% trans %}`, and `day` in the visitor's language


def add_routes(app: web.Application) -> None:
    from portal_fallback import flow_pages, history, lookup, method_update, signing

    app[PAGES] = build_pages()
    audience.add_routes(app)
    app.router.add_get("/p/{token}", open_link)
    app.router.add_get("/t/{version}", terms)
    app.router.add_get("/portal", to_portal)
    app.router.add_static("/static/", STATIC)
    portal = web.Application(middlewares=[security_headers, with_session, require_csrf])
    flow_pages.add_routes(portal)
    history.add_routes(portal)
    lookup.add_routes(portal)
    signing.add_routes(portal)
    method_update.add_routes(portal)
    app.add_subapp("/portal/", portal)


# Stripe's documented directives for Stripe.js, Elements and 3-D Secure (the challenge and bank
# redirects open in hooks.stripe.com frames): https://docs.stripe.com/security/guide#content-security-policy
# The guide's maps.googleapis.com is for the Address Element's autocomplete, which we do not use.
STRIPE_SCRIPT_SRC = ("https://*.js.stripe.com", "https://js.stripe.com")
STRIPE_FRAME_SRC = ("https://*.js.stripe.com", "https://js.stripe.com", "https://hooks.stripe.com")
STRIPE_CONNECT_SRC = ("https://api.stripe.com",)


# PayPal's JS SDK (its button, the approval window, its images), only where PayPal is configured:
# https://developer.paypal.com/sdk/js/configuration/#link-contentsecuritypolicy
PAYPAL_SCRIPT_SRC = ("https://*.paypal.com", "https://*.paypalobjects.com")
PAYPAL_FRAME_SRC = ("https://*.paypal.com",)
PAYPAL_CONNECT_SRC = ("https://*.paypal.com",)
PAYPAL_IMG_SRC = ("https://*.paypal.com", "https://*.paypalobjects.com")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(stripe_js_url: str, paypal_js_url: str | None = None) -> str:
    """Only our own assets, Stripe's and (where configured) PayPal's: no inline script, no
    third-party fonts or trackers. A Stripe.js or PayPal SDK served from elsewhere (localstripe or
    the PayPal fake in tests and the demo) adds its origin, where its script, frames and API
    live; our own PayPal stand-in (a path) adds nothing."""
    origin = _origin(stripe_js_url)
    local: tuple[str, ...] = () if origin in STRIPE_SCRIPT_SRC else (origin,)
    script, frame, connect, img = STRIPE_SCRIPT_SRC, STRIPE_FRAME_SRC, STRIPE_CONNECT_SRC, ()
    if paypal_js_url and paypal_js_url.startswith("https://www.paypal.com/"):
        script, frame = (*script, *PAYPAL_SCRIPT_SRC), (*frame, *PAYPAL_FRAME_SRC)
        connect, img = (*connect, *PAYPAL_CONNECT_SRC), PAYPAL_IMG_SRC
    elif paypal_js_url and "://" in paypal_js_url and _origin(paypal_js_url) not in local:
        local = (*local, _origin(paypal_js_url))
    return "; ".join(
        [
            "default-src 'self'",
            " ".join(("script-src 'self'", *script, *local)),
            " ".join(("frame-src", *frame, *local)),
            " ".join(("connect-src 'self'", *connect, *local)),
            " ".join(("img-src 'self' data:", *img)),
            "style-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


def headers_for(request: web.Request) -> dict[str, str]:
    settings = request.config_dict[appkeys.SETTINGS]
    return {
        "Content-Security-Policy": content_security_policy(
            settings.stripe_js_url,
            settings.paypal_js_url if settings.paypal_configured else None,
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",  # a link token must never leak through Referer
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


def page(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    """A page in the request's language (audience.settle decided it), with its brand, the
    language switch and the CSRF token. A `title` is an English text marked with N_."""
    settings = request.config_dict[appkeys.SETTINGS]
    row = request.get(SESSION)
    language = i18n.set_language(audience.language_of(request))
    if isinstance(context.get("title"), str):
        context["title"] = i18n.gettext(str(context["title"]))
    html = (
        request.config_dict[PAGES]
        .get_template(template)
        .render(
            {
                "brand": request.get(BRAND) or " ".join(settings.brand.split()),
                "support_contact": settings.support_contact,
                "csrf_token": row.csrf_token if row else "",
                "lang": language,
                "language_links": audience.switch_links(request),
                **context,
            }
        )
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers=headers_for(request)
    )


@web.middleware
async def security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405):
            if BRAND not in request:
                async with request.config_dict[appkeys.DATABASE].session() as db:
                    await audience.settle(request, db, None)
            return page(request, "not_found.html", exc.status)
        raise
    for name, value in headers_for(request).items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def with_session(request: web.Request, handler):  # type: ignore[no-untyped-def]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        row = await sessions.load_session(db, request.cookies.get(sessions.COOKIE), now)
        if row is not None:
            link = await db.get(Link, row.link_id) if row.link_id else None
            ends_by = link.expires_at if link is not None else None
            # Sliding: idle time is what counts. Written at most once a minute, not per request.
            if row.expires_at - now < sessions.IDLE_LIFETIME - timedelta(minutes=1):
                row.expires_at = sessions.session_end(now, ends_by)
                await db.commit()
            request[SESSION] = row
            account = await db.get(Account, row.account_id) if row.account_id else None
            await audience.settle(request, db, account)
            tagged = await _log_fields(request, db, account)
            if link is not None:
                # A link's session reaches what the link was sent for, while the link stands.
                standing = await ledger.link_standing(db, link, now)
                refusal = link_scope.out_of_reach(request, link, standing)
                if isinstance(refusal, web.HTTPException):
                    raise refusal
                if refusal is not None:
                    return refusal
        else:
            ended = await sessions.ended_link_session(db, request.cookies.get(sessions.COOKIE), now)
            link = await db.get(Link, ended.link_id) if ended is not None else None
            account = await db.get(Account, link.account_id) if link is not None else None
            await audience.settle(request, db, account)
            if link is not None:
                # Ended with its link (which caps it): say so, with what to do, as the link
                # does; the look-up and the other pages for anyone still answer as usual.
                standing = await ledger.link_standing(db, link, now)
                if standing is not None and request.path not in link_scope.ANYONE:
                    return link_scope.closed_page(request, link, standing)
    if row is None:
        return await handler(request)
    with logs.scope(**tagged):
        return await handler(request)


async def _log_fields(request: web.Request, db: AsyncSession, account: Account | None) -> dict:
    """What a portal request's log lines carry, as an SMS turn's do: the account, and the tag of
    the conversation the portal's steps drive (the one bound to the account, else its phone's),
    so the web and the texts of one customer read as one conversation; never the phone."""
    if account is None:
        return {}
    key = await db.scalar(
        select(Conversation.phone)
        .where(Conversation.account_id == account.id, Conversation.flow == "payment")
        .order_by(Conversation.updated_at.desc())
        .limit(1)
    ) or account.phone or f"web:{account.id}"
    secret = request.config_dict[appkeys.SETTINGS].secret_key
    return {"conversation": logs.conversation_tag(secret, key), "account_id": account.id}


SESSION_STARTS_AT = "/portal/lookup"  # the only form a browser without a session may post


@web.middleware
async def require_csrf(request: web.Request, handler):  # type: ignore[no-untyped-def]
    if request.method not in sessions.UNSAFE_METHODS:
        return await handler(request)
    form = await request.post()
    token = form.get("csrf_token")
    submitted = token if isinstance(token, str) else None
    if request.get(SESSION) is None and request.path == SESSION_STARTS_AT:
        if not sessions.form_token_ok(request, submitted):
            return page(request, "expired_form.html", 403)
        return await with_new_session(request, handler)
    if not sessions.csrf_ok(request.get(SESSION), submitted):
        return page(request, "expired_form.html", 403)
    return await handler(request)


async def with_new_session(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """The look-up posted from a browser without a session: the session is stored now."""
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        row, token = await sessions.start_session(request, db, now=now)
        await db.commit()
    request[SESSION] = row
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        sessions.set_cookie(request, exc, token)
        raise
    sessions.set_cookie(request, response, token)
    return response


async def open_link(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    now = request.config_dict[appkeys.CLOCK].now()
    if len(token) > 64:
        async with request.config_dict[appkeys.DATABASE].session() as db:
            await audience.settle(request, db, None)
        return page(request, "link_unknown.html", 404)
    async with request.config_dict[appkeys.DATABASE].session() as db:
        link = await ledger.link_for_token(db, token)
        if link is None:
            await audience.settle(request, db, None)
            return page(request, "link_unknown.html", 404)
        await audience.settle(request, db, await db.get(Account, link.account_id))
        standing = await ledger.link_standing(db, link, now)
        if standing is not None:
            return link_scope.closed_page(request, link, standing)
        _, session_token = await sessions.start_session(
            request,
            db,
            now=now,
            account_id=link.account_id,
            verified_by="link",
            link_id=link.id,
            ends_by=link.expires_at,
        )
        await ledger.audit(
            db,
            "link_opened",
            at=now,
            account_id=link.account_id,
            channel="web",
            purpose=link.purpose,
        )
        await db.commit()
    if link.amount_cents or link.fee_cents:
        await _start_afresh_for_terms(request, link)
    response = web.HTTPSeeOther(link_scope.landing(link))
    sessions.set_cookie(request, response, session_token)
    for name, value in headers_for(request).items():
        response.headers[name] = value
    raise response


async def _start_afresh_for_terms(request: web.Request, link: Link) -> None:
    """A link's preset amount and fee apply when a payment starts: a flow half way through (a
    PAY by text, an earlier link) would otherwise take any amount, without the fee, and leave the
    link open for its own payment. Its own flow, reopened, goes on where it was."""
    engine = request.config_dict[appkeys.ENGINE]
    current = await engine.web_view(link.account_id, verified_by="link")
    if current.flow.state == "idle" or current.flow.context.get("link_id") == link.id:
        return
    await engine.web_step(link.account_id, restart=True, verified_by="link")


async def to_portal(_: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/portal/")


async def terms(request: web.Request) -> web.Response:
    """The terms a text or page points to: generic words (the signed text itself is the
    agreement, kept with its record), in the visitor's language and under the creditor's name."""
    version = request.match_info["version"][:20]
    async with request.config_dict[appkeys.DATABASE].session() as db:
        row = await sessions.load_session(
            db, request.cookies.get(sessions.COOKIE), request.config_dict[appkeys.CLOCK].now()
        )
        account = await db.get(Account, row.account_id) if row and row.account_id else None
        await audience.settle(request, db, account, terms_version=version)
    return page(request, "terms.html", version=version, title=N_("Payment terms"))
