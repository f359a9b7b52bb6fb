"""Who a page speaks to: its language and the brand it carries.

The language is, first, the visitor's own choice (the English / Español switch on every page,
kept in a cookie), then the language the customer's phone chose in the conversation, then the
account's (`accounts.language`), else English. The brand is the creditor's name
(`Creditor.shown_name`); a page with no account behind it (the terms, an unknown link, a 404)
carries the only creditor's, or the one whose terms version it shows, and the configured brand
only when neither tells.

The switch is a plain link (`GET /lang/{code}?next=/path`): it sets nothing but this browser's
own display preference (no server state, nothing a forged request could abuse), and it sends
back only to a path of this site, never elsewhere.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.ledger.models import Account, Conversation, Creditor
from bot.text import i18n

LANGUAGE_COOKIE = "paybot_lang"
LANGUAGE = web.RequestKey("portal_language", str)
BRAND = web.RequestKey("portal_brand", str)
ONE_YEAR = 365 * 24 * 3600

# A form posted to a path with no page of its own: where the switch comes back to after its
# answer. Every other form posts to its own page's path (/portal/pay, /portal/plan/terms...).
_GET_TWINS = {
    "/portal/lookup": "/portal/",
    "/portal/methods": "/portal/pay",
    "/portal/sign-out": "/portal/",
    "/portal/plan/start": "/portal/plan",
    "/portal/plan/methods": "/portal/plan/method",
    "/portal/method/new": "/portal/method",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/lang/{code}", switch)


def chosen(request: web.Request) -> str | None:
    """The visitor's own choice: the switch's cookie, else `?lang=` on a link we sent."""
    return i18n.normalize_language(request.cookies.get(LANGUAGE_COOKIE)) or (
        i18n.normalize_language(request.query.get("lang"))
    )


async def account_language(db: AsyncSession, account: Account) -> str:
    """The conversation's choice for the account's phone wins over what the creditor loaded."""
    spoken = await db.scalar(
        select(Conversation.language)
        .where(
            Conversation.language.is_not(None),
            or_(Conversation.account_id == account.id, Conversation.phone == account.phone)
            if account.phone
            else Conversation.account_id == account.id,
        )
        .order_by(Conversation.updated_at.desc())
        .limit(1)
    )
    return i18n.normalize_language(spoken) or i18n.normalize_language(account.language) or "en"


async def default_brand(request: web.Request, db: AsyncSession, terms_version: str = "") -> str:
    """The brand of a page with no account behind it."""
    creditors = list(await db.scalars(select(Creditor).order_by(Creditor.code).limit(50)))
    if len(creditors) == 1 and creditors[0].shown_name:
        return creditors[0].shown_name
    if terms_version:
        named = [
            c for c in creditors if (c.settings or {}).get("terms_version") == terms_version
        ]
        if len(named) == 1 and named[0].shown_name:
            return named[0].shown_name
    return " ".join(request.config_dict[appkeys.SETTINGS].brand.split())


async def settle(
    request: web.Request, db: AsyncSession, account: Account | None, *, terms_version: str = ""
) -> str:
    """Decide the language and the brand of this request, once; returns the language."""
    if account is not None:
        language = chosen(request) or await account_language(db, account)
        creditor = await db.get(Creditor, account.creditor_code) if account.creditor_code else None
        brand = (creditor.shown_name if creditor else "") or await default_brand(request, db)
    else:
        language = chosen(request) or "en"
        brand = await default_brand(request, db, terms_version)
    request[LANGUAGE] = i18n.set_language(language)
    request[BRAND] = brand
    return request[LANGUAGE]


def language_of(request: web.Request) -> str:
    return request.get(LANGUAGE) or chosen(request) or "en"


def here(request: web.Request) -> str:
    """The page to come back to after a switch: this one, or its GET twin for a form's answer."""
    if request.method == "GET":
        return request.path_qs
    path = request.path
    if path.startswith("/portal/receipt/") and path.endswith("/email"):
        return path.rsplit("/", 1)[0]
    return _GET_TWINS.get(path, path)


def switch_links(request: web.Request) -> list[tuple[str, str, str]]:
    """(code, name, href) for each language but the current one."""
    current = language_of(request)
    back = quote(here(request), safe="/")
    return [
        (code, i18n.LANGUAGE_NAMES[code], f"/lang/{code}?next={back}")
        for code in i18n.LANGUAGES
        if code != current
    ]


def _safe_next(value: str | None) -> str:
    """Only a path of this site: never `//host` or `/\\host` (a browser reads both as a host)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/portal/"
    if any(ch in value for ch in "\r\n\t") or len(value) > 500:
        return "/portal/"
    return value


async def switch(request: web.Request) -> web.StreamResponse:
    code = i18n.normalize_language(request.match_info["code"])
    target = _safe_next(request.query.get("next"))
    response = web.HTTPSeeOther(target)
    if code is not None:
        settings = request.config_dict[appkeys.SETTINGS]
        response.set_cookie(
            LANGUAGE_COOKIE,
            code,
            httponly=True,
            secure=settings.public_base_url.startswith("https://"),
            samesite="Lax",
            path="/",
            max_age=ONE_YEAR,
        )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    raise response
