"""Journey 2: the portal without a link. The account is found by account ID or SSN, then a second
factor: a code sent to the phone or email on file, or, only for an account with neither, the last
4 of the SSN and the date of birth (bot/accounts/second_factor.py).

Every answer is the same whether or not an account was found, and the code goes out after the
answer. Codes are capped per account and per destination; a client that keeps failing waits
longer and longer, and no one else is slowed down by it. Look-ups are rate limited per address.
"""

from __future__ import annotations

import re
from datetime import date

from aiohttp import web
from sqlalchemy import select

from bot import appkeys
from bot.accounts import second_factor
from bot.ledger import queries as ledger
from bot.ledger.models import Account, WebSession
from bot.security import ssn_digest
from bot.text.i18n import N_
from portal_fallback import sessions
from portal_fallback.app import page
from portal_fallback.sessions import SESSION, client_ip

_SSN = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")
TITLE = N_("Verify it's you")


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/", lookup_form)
    portal.router.add_post("/lookup", lookup)
    portal.router.add_get("/verify", verify_form)
    portal.router.add_post("/verify", verify)


async def lookup_form(request: web.Request) -> web.StreamResponse:
    """A visit stores nothing: without a session the form's CSRF token is a cookie's (double
    submit), and the session begins with the look-up (portal_fallback.app.require_csrf)."""
    if request.get(SESSION) is not None:
        return page(request, "lookup.html", title=N_("Find your account"))
    token = sessions.form_token(request)
    response = page(request, "lookup.html", title=N_("Find your account"), csrf_token=token)
    sessions.set_form_cookie(request, response, token)
    return response


def client_key(request: web.Request) -> str:
    return f"ip:{client_ip(request) or 'unknown'}"


async def rate_limited(request: web.Request) -> bool:
    return await second_factor.too_many_lookups(
        request.config_dict[appkeys.COORDINATOR].redis, client_key(request)
    )


async def lookup(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    assert row is not None  # require_csrf let the post through, so there is a session
    if await rate_limited(request):
        return page(request, "lookup.html", 429, title=N_("Find your account"), too_many=True)
    form = await request.post()
    identifier = str(form.get("identifier") or "").strip()[:64]
    if not identifier:
        return page(request, "lookup.html", 422, title=N_("Find your account"), missing=True)
    settings = request.config_dict[appkeys.SETTINGS]
    engine = request.config_dict[appkeys.ENGINE]
    database = request.config_dict[appkeys.DATABASE]
    now = request.config_dict[appkeys.CLOCK].now()
    to_send = None
    async with database.writer(), database.session() as db:
        if _SSN.match(identifier):
            account = await db.scalar(
                select(Account)
                .where(Account.ssn_hash == ssn_digest(settings.secret_key, identifier))
                .order_by(Account.balance_cents.desc())
                .limit(1)
            )
        else:
            account = await ledger.account_by_ref(db, identifier)
        subject = (
            second_factor.account_subject(account.id)
            if account is not None
            else second_factor.unknown_subject(settings.secret_key, identifier)
        )
        stored = await db.get(WebSession, row.id, with_for_update=True)
        assert stored is not None
        stored.pending_account_id = account.id if account else None
        stored.pending_subject = subject
        stored.pending_code_sha256 = stored.pending_code_expires_at = None
        waiting = await second_factor.wait_left(
            db, subject=subject, client=client_key(request), now=now
        )
        if not waiting:
            texts_allowed, brand = await engine.code_sender(db, account)
            try:
                challenge = await second_factor.open_challenge(
                    db,
                    subject=subject,
                    account=account,
                    scope=f"web:{row.id}",
                    secret_key=settings.secret_key,
                    now=now,
                    purpose="portal_lookup",
                    brand=brand,
                    texts_allowed=texts_allowed,
                )
            except second_factor.CodeLimitReached:
                await ledger.audit(
                    db, "code_limit_reached", at=now, account_id=stored.pending_account_id,
                    channel="web", ip=client_ip(request),
                )
            else:
                stored.pending_code_sha256 = challenge.digest
                stored.pending_code_expires_at = challenge.expires_at
                to_send = challenge.code
        await ledger.audit(
            db, "portal_lookup", at=now, account_id=account.id if account else None,
            channel="web", ip=client_ip(request),
        )
        await db.commit()
    if to_send is not None:
        engine.after_reply(second_factor.send_code(engine.notifier, to_send))
    raise web.HTTPSeeOther("/portal/verify")


async def verify_form(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    if row is None or row.pending_subject is None:
        raise web.HTTPSeeOther("/portal/")
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        standing = await _standing(db, request, row, now)
    blocked = standing.get("wait_minutes") or standing.get("capped")
    return page(request, "verify.html", 429 if blocked else 200, title=TITLE, **standing)


async def _standing(db, request: web.Request, row: WebSession, now) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What the verify page says before an answer: wait, no code could be sent, the code is
    spent, or nothing (the form)."""
    assert row.pending_subject is not None
    wait = await second_factor.wait_left(
        db, subject=row.pending_subject, client=client_key(request), now=now
    )
    if wait:
        return {"wait_minutes": second_factor.minutes(wait)}
    if row.pending_code_sha256 is None:
        return {"capped": True}
    if not await second_factor.tries_left(db, row.pending_code_sha256[:32]):
        return {"spent": True}
    return {}


async def verify(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    assert row is not None
    form = await request.post()
    settings = request.config_dict[appkeys.SETTINGS]
    database = request.config_dict[appkeys.DATABASE]
    now = request.config_dict[appkeys.CLOCK].now()
    async with database.writer(), database.session() as db:
        # Locked, so that answers sent at once through one session take their turns.
        stored = await db.get(WebSession, row.id, with_for_update=True)
        assert stored is not None
        subject = stored.pending_subject
        if subject is None:
            raise web.HTTPSeeOther("/portal/")
        standing = await _standing(db, request, stored, now)
        if standing:
            blocked = standing.get("wait_minutes") or standing.get("capped")
            return page(request, "verify.html", 429 if blocked else 422, title=TITLE, **standing)
        assert stored.pending_code_sha256 is not None
        challenge_id = stored.pending_code_sha256[:32]
        account_id = stored.pending_account_id
        account = await db.get(Account, account_id) if account_id else None
        method = "code" if form.get("code") else "knowledge"
        if method == "code":
            ok = second_factor.code_matches(
                stored.pending_code_sha256,
                stored.pending_code_expires_at,
                secret_key=settings.secret_key,
                scope=f"web:{row.id}",
                answer=str(form.get("code") or "").strip()[:12],
                now=now,
            )
        else:
            ok = second_factor.knowledge_matches(
                account, str(form.get("ssn_last4") or ""), _iso_date(str(form.get("dob") or ""))
            )
        second_factor.record_attempt(
            db,
            subject=subject,
            client=client_key(request),
            challenge_id=challenge_id,
            account_id=account_id,
            succeeded=ok,
            now=now,
        )
        if not ok:
            await ledger.audit(
                db, "verification_failed", at=now, account_id=account_id, channel="web",
                ip=client_ip(request),
            )
            await db.flush()
            tries = await second_factor.tries_left(db, challenge_id)
            wait = await second_factor.wait_left(
                db, subject=subject, client=client_key(request), now=now
            )
            await db.commit()
            return page(
                request,
                "verify.html",
                422,
                title=TITLE,
                wrong=True,
                tries_left=tries,
                spent=not tries,
                wait_minutes=second_factor.minutes(wait) if wait else None,
            )
        assert account is not None
        _, token = await sessions.start_session(
            request, db, now=now, account_id=account.id, verified_by=method
        )
        await ledger.audit(
            db, "verified", at=now, account_id=account.id, channel="web", by=method,
            ip=client_ip(request),
        )
        await db.commit()
    response = web.HTTPSeeOther("/portal/pay")
    sessions.set_cookie(request, response, token)
    raise response


def _iso_date(text: str) -> str:
    try:
        return date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        return ""
