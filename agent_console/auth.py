"""Sign-in (password, then the code for whoever has a second factor; a supervisor without one
enrols it here), sign-out, and the one-time setup link."""

from __future__ import annotations

import secrets

from aiohttp import web

from agent_console.app import (
    FORM_COOKIE,
    HEADERS,
    PREFIX,
    clear_session_cookie,
    current,
    limiter,
    page,
    safe_next,
    seal,
    set_session_cookie,
)
from bot import appkeys
from bot.ledger import queries as ledger
from bot.ledger.models import Staff
from bot.staff import accounts, credentials, login, sessions
from portal_fallback.sessions import client_ip

SETUP_SECONDS = 3600  # the secret shown on the setup page must be confirmed within the hour


def add_routes(console: web.Application) -> None:
    console.router.add_get("/", home)
    console.router.add_get("/login", login_form)
    console.router.add_post("/login", login_password)
    console.router.add_post("/login/code", login_code)
    console.router.add_post("/logout", logout)
    console.router.add_get("/setup/{token}", setup_form)
    console.router.add_post("/setup/{token}", setup_done)


async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(PREFIX + "/inbox/waiting")


def _form_token(request: web.Request) -> str:
    token = request.cookies.get(FORM_COOKIE, "")
    return token if 30 <= len(token) <= 100 else secrets.token_urlsafe(32)


def _open_page(request: web.Request, template: str, status: int = 200, **context: object,
               ) -> web.Response:
    """A page for a browser without a session: its forms carry the form cookie's token."""
    token = _form_token(request)
    response = page(request, template, status, form_token=token, **context)
    settings = request.config_dict[appkeys.SETTINGS]
    response.set_cookie(
        FORM_COOKIE, token, httponly=True, secure=settings.public_base_url.startswith("https://"),
        samesite="Strict", path=PREFIX + "/", max_age=3600,
    )
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if current(request) is not None:
        raise web.HTTPSeeOther(PREFIX + "/")
    return _open_page(request, "login.html", title="Sign in",
                      next=safe_next(request.query.get("next")), notice=request.query.get("done"))


def _field(form: object, name: str, limit: int = 300) -> str:
    value = form.get(name) if hasattr(form, "get") else None  # type: ignore[union-attr]
    return value[:limit] if isinstance(value, str) else ""


async def _start(request: web.Request, db, staff: Staff, next_path: str) -> web.StreamResponse:  # type: ignore[no-untyped-def]
    now = request.config_dict[appkeys.CLOCK].now()
    address = client_ip(request)
    await login.signed_in(db, staff, at=now, address=address)
    _, token = await sessions.start(
        db, staff, at=now, address=address, user_agent=request.headers.get("User-Agent")
    )
    await db.commit()
    response = web.HTTPSeeOther(safe_next(next_path), headers=HEADERS)
    set_session_cookie(request, response, token)
    response.del_cookie(FORM_COOKIE, path=PREFIX + "/")
    raise response


async def login_password(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email, password = _field(form, "email", 254), _field(form, "password", 300)
    next_path = safe_next(_field(form, "next"))
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        try:
            staff = await login.check_password(
                db, email, password, at=now, address=client_ip(request), limiter=limiter(request)
            )
        except login.LoginRefused as refused:
            await db.commit()
            return _open_page(request, "login.html", refused.status, title="Sign in",
                              error=refused.message, email=email, next=next_path)
        if not login.needs_second_factor(staff):
            return await _start(request, db, staff, next_path)
        await db.commit()  # a rehashed password
        return _code_page(request, staff, next_path, enrol=staff.totp_secret is None)


def _code_page(request: web.Request, staff: Staff, next_path: str, *, enrol: bool,
               secret: str | None = None, error: str | None = None) -> web.Response:
    now = request.config_dict[appkeys.CLOCK].now()
    if enrol:
        secret = secret or credentials.new_totp_secret()
        return _open_page(
            request, "enrol.html", 401 if error else 200, title="Set up your second factor",
            ticket=login.ticket(seal(request), staff, now, secret), secret=secret,
            uri=credentials.provisioning_uri(secret, staff.email), next=next_path, error=error,
        )
    return _open_page(
        request, "login_code.html", 401 if error else 200, title="Enter your code",
        ticket=login.ticket(seal(request), staff, now, None), next=next_path, error=error,
    )


async def login_code(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    next_path = safe_next(_field(form, "next"))
    now = request.config_dict[appkeys.CLOCK].now()
    ticket = login.open_ticket(seal(request), _field(form, "ticket", 1000), now)
    if ticket is None:
        return _open_page(request, "login.html", 401, title="Sign in",
                          error=login.TICKET_EXPIRED, next=next_path)
    async with request.config_dict[appkeys.DATABASE].session() as db:
        staff = await db.get(Staff, ticket.staff_id)
        secret = ticket.secret
        if staff is not None and secret is None and staff.totp_secret:
            secret = seal(request).open(staff.totp_secret)
        if staff is None or secret is None:
            return _open_page(request, "login.html", 401, title="Sign in",
                              error=login.TICKET_EXPIRED, next=next_path)
        try:
            await login.check_code(db, staff, _field(form, "code", 20), secret=secret, at=now,
                                   address=client_ip(request), limiter=limiter(request))
        except login.LoginRefused as refused:
            await db.commit()
            if refused.message == login.FAILED:
                return _open_page(request, "login.html", 401, title="Sign in",
                                  error=refused.message, next=next_path)
            return _code_page(request, staff, next_path, enrol=ticket.secret is not None,
                              secret=ticket.secret, error=refused.message)
        if ticket.secret is not None:
            await accounts.enrol_second_factor(db, staff, ticket.secret, seal=seal(request),
                                               at=now)
        return await _start(request, db, staff, next_path)


async def logout(request: web.Request) -> web.StreamResponse:
    found = current(request)
    now = request.config_dict[appkeys.CLOCK].now()
    if found is not None:
        async with request.config_dict[appkeys.DATABASE].session() as db:
            row = await db.merge(found.row)
            await sessions.end(db, row, now)
            await ledger.audit(db, "staff_logout", at=now,
                               actor=accounts.staff_actor(found.staff))
            await db.commit()
    response = web.HTTPSeeOther(PREFIX + "/login", headers=HEADERS)
    clear_session_cookie(response)
    raise response


def _setup_page(request: web.Request, staff: Staff, *, error: str | None = None,
                secret: str | None = None) -> web.Response:
    enrol = staff.role == "supervisor"
    context: dict[str, object] = {}
    if enrol:
        now = request.config_dict[appkeys.CLOCK].now()
        secret = secret or credentials.new_totp_secret()
        context = {
            "secret": secret, "uri": credentials.provisioning_uri(secret, staff.email),
            "sealed_secret": seal(request).close_at(f"setup:{staff.id}:{secret}", now),
        }
    return _open_page(request, "setup.html", 400 if error else 200, title="Set up your account",
                      who=staff, error=error, enrol=enrol, min_password=credentials.MIN_PASSWORD,
                      **context)


async def setup_form(request: web.Request) -> web.StreamResponse:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        staff = await accounts.for_setup(db, request.match_info["token"], now)
    if staff is None:
        return _open_page(request, "setup_gone.html", 410, title="Link no longer valid")
    return _setup_page(request, staff)


async def setup_done(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    now = request.config_dict[appkeys.CLOCK].now()
    password, again = _field(form, "password"), _field(form, "password_again")
    async with request.config_dict[appkeys.DATABASE].session() as db:
        staff = await accounts.for_setup(db, request.match_info["token"], now)
        if staff is None:
            return _open_page(request, "setup_gone.html", 410, title="Link no longer valid")
        secret = None
        if staff.role == "supervisor":
            opened = seal(request).open(_field(form, "sealed_secret", 1000), at=now,
                                        ttl=SETUP_SECONDS)
            prefix = f"setup:{staff.id}:"
            if opened is None or not opened.startswith(prefix):
                return _setup_page(request, staff, error="The page was open too long: "
                                   "add this new key to your app and enter its code.")
            secret = opened[len(prefix):]
        if password != again:
            return _setup_page(request, staff, error="The two passwords differ.", secret=secret)
        try:
            credentials.check_password_rules(password)
        except credentials.WeakPassword as weak:
            return _setup_page(request, staff, error=str(weak), secret=secret)
        if secret is not None:
            try:
                await login.check_code(db, staff, _field(form, "code", 20), secret=secret,
                                       at=now, address=client_ip(request),
                                       limiter=limiter(request))
            except login.LoginRefused as refused:
                await db.commit()
                return _setup_page(request, staff, error=refused.message, secret=secret)
        await accounts.complete_setup(db, staff, password=password, totp_secret=secret,
                                      seal=seal(request), at=now)
        await db.commit()
    raise web.HTTPSeeOther(PREFIX + "/login?done=setup", headers=HEADERS)
