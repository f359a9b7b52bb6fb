"""The console sub-app (mounted at /agent/ by bot/app.py): its pages, middlewares and roles.

Middlewares, in order: security headers (a CSP without inline script, no framing, no caching),
the staff session (every route but sign-in, setup and static files needs one: a page redirects
to /agent/login, the live feed and JSON answer 401), CSRF on every POST, and no control
character in anything typed (a form field or a query value).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from bot import appkeys
from bot.money import format_cents
from bot.security import constant_time_equal
from bot.staff import sessions
from bot.staff.credentials import SecretSeal
from bot.staff.login import AddressLimiter
from bot.text.gsm7 import has_control_characters

PAGES = web.AppKey("console_pages", Environment)
CURRENT = web.RequestKey("console_staff", sessions.Current)
STATIC = Path(__file__).parent / "static"
COOKIE = "paybot_staff"
FORM_COOKIE = "paybot_staff_form"  # the sign-in forms' CSRF token before any session
PREFIX = "/agent"
OPEN_PATHS = ("/agent/login", "/agent/setup/", "/agent/static/")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app() -> web.Application:
    from agent_console import auth, conversation, inbox, live, supervisor

    console = web.Application(
        middlewares=[security_headers, with_staff_session, require_csrf, plain_text_only]
    )
    console[PAGES] = build_pages()
    console.router.add_static("/static/", STATIC)
    auth.add_routes(console)
    inbox.add_routes(console)
    conversation.add_routes(console)
    live.add_routes(console)
    supervisor.add_routes(console)
    return console


def build_pages() -> Environment:
    env = Environment(
        loader=PackageLoader("agent_console", "templates"),
        autoescape=select_autoescape(default=True),
        auto_reload=False,
    )
    env.filters["money"] = format_cents
    return env


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    "object-src 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a setup token in a URL never leaks through Referer
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def current(request: web.Request) -> sessions.Current | None:
    return request.get(CURRENT)


def page(request: web.Request, template: str, status: int = 200, **context: object) -> web.Response:
    settings = request.config_dict[appkeys.SETTINGS]
    found = current(request)
    html = request.config_dict[PAGES].get_template(template).render({
        "brand": settings.brand,
        "me": found.staff if found else None,
        "csrf_token": found.row.csrf_token if found else context.pop("form_token", ""),
        "path": request.path,
        **context,
    })
    return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)


def seal(request: web.Request) -> SecretSeal:
    return _seal_for(request.config_dict[appkeys.SETTINGS].secret_key)


@functools.lru_cache(maxsize=4)
def _seal_for(secret_key: str) -> SecretSeal:
    return SecretSeal(secret_key)


def limiter(request: web.Request) -> AddressLimiter:
    return AddressLimiter(request.config_dict[appkeys.COORDINATOR].redis)


def idle_limit(request: web.Request) -> timedelta:
    return timedelta(minutes=request.config_dict[appkeys.SETTINGS].staff_idle_minutes)


def require_role(role: str) -> Callable[[Handler], Handler]:
    """A supervisor's page: anyone else gets 403 (a supervisor does all an agent does)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            found = current(request)
            if found is None or found.staff.role != role:
                return page(request, "forbidden.html", 403, title="Not for your role")
            return await handler(request)

        return checked

    return decorate


def wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return (
        request.path.startswith("/agent/live")
        or "text/event-stream" in accept
        or ("application/json" in accept and "text/html" not in accept)
    )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405) and not wants_json(request):
            return page(request, "not_found.html", exc.status, title="Not found")
        for name, value in HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    if not response.prepared:  # the live feed's headers are already sent (and set by itself)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def _open(path: str) -> bool:
    return path.startswith(OPEN_PATHS)


@web.middleware
async def with_staff_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _open(request.path):
        return await handler(request)
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        found = await sessions.load(
            db, request.cookies.get(COOKIE), at=now, idle=idle_limit(request)
        )
    if found is None:
        if wants_json(request):
            return web.json_response(
                {"error": "sign in first"}, status=401, headers=HEADERS
            )
        target = request.path_qs if request.method == "GET" else PREFIX + "/"
        raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(target, safe='')}", headers=HEADERS)
    request[CURRENT] = found
    return await handler(request)


async def submitted_token(request: web.Request) -> str:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        token = form.get("csrf_token")
        return token if isinstance(token, str) else ""
    return ""


def form_cookie_ok(request: web.Request, submitted: str) -> bool:
    cookie = request.cookies.get(FORM_COOKIE, "")
    return 30 <= len(cookie) <= 100 and bool(submitted) and constant_time_equal(cookie, submitted)


@web.middleware
async def require_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in UNSAFE_METHODS:
        return await handler(request)
    submitted = await submitted_token(request)
    found = current(request)
    if found is not None:
        ok = bool(submitted) and constant_time_equal(found.row.csrf_token, submitted)
    else:  # sign-in and setup forms: double submit against their own cookie
        ok = form_cookie_ok(request, submitted)
    if not ok:
        if wants_json(request):
            return web.json_response({"error": "form expired"}, status=403, headers=HEADERS)
        return page(request, "expired_form.html", 403, title="Form expired")
    return await handler(request)


@web.middleware
async def plain_text_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever staff type, in a form or a search, is refused whole when it carries a control
    character: one clear page, nothing stored, never a database error."""
    values = [value for value in request.query.values()]
    if request.method in UNSAFE_METHODS and request.content_type in (
        "application/x-www-form-urlencoded", "multipart/form-data"
    ):
        values += [value for value in (await request.post()).values() if isinstance(value, str)]
    if any(has_control_characters(value) for value in values):
        if wants_json(request):
            return web.json_response(
                {"error": "control characters are not accepted"}, status=422, headers=HEADERS
            )
        return page(request, "unreadable_input.html", 422, title="Not accepted")
    return await handler(request)


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.config_dict[appkeys.SETTINGS]
    response.set_cookie(
        COOKIE, token, httponly=True, secure=settings.public_base_url.startswith("https://"),
        samesite="Strict", path=PREFIX + "/",
        max_age=int(sessions.ABSOLUTE_LIFETIME.total_seconds()),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PREFIX + "/")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a console path (never another site)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target and not _open(target):
        return target
    return PREFIX + "/"
