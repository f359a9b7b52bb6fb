"""The web side of a link, kept small until the portal issue: it opens or refuses a link,
and shows the terms a customer agrees to by text."""

from __future__ import annotations

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from bot import appkeys, ledger
from bot.models import Account
from bot.security import mask_email

PAGES = web.AppKey("portal_pages", Environment)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_routes(app: web.Application) -> None:
    app[PAGES] = Environment(
        loader=PackageLoader("portal_fallback", "templates"), autoescape=select_autoescape()
    )
    app.router.add_get("/p/{token}", open_link)
    app.router.add_get("/t/{version}", terms)


def page(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    html = request.config_dict[PAGES].get_template(template).render(**context)
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


async def open_link(request: web.Request) -> web.Response:
    token = request.match_info["token"]
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    if len(token) > 64:
        return page(request, "link_unknown.html", 404)
    async with request.config_dict[appkeys.DATABASE].session() as session:
        link = await ledger.link_for_token(session, token)
        if link is None:
            return page(request, "link_unknown.html", 404)
        if link.revoked_at is not None or link.expires_at <= now:
            return page(request, "link_expired.html", 410)
        account = await session.get(Account, link.account_id)
        assert account is not None
        return page(
            request,
            "link.html",
            first_name=account.first_name,
            description=account.description,
            balance=account.balance_cents,
            masked_email=mask_email(account.email),
            brand=settings.brand,
        )


async def terms(request: web.Request) -> web.Response:
    version = request.match_info["version"]
    return page(
        request, "terms.html", version=version, brand=request.config_dict[appkeys.SETTINGS].brand
    )
