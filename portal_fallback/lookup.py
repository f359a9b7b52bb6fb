"""Journey 2: the portal without a link. The account is found by account ID or SSN, then a second
factor (a code to the phone or email on file; else last 4 of the SSN and the date of birth).

The answer is the same whether or not an account was found; three failures lock the browser's
address and the account; look-ups are rate limited per address.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

from aiohttp import web
from sqlalchemy import select

from bot import appkeys, ledger
from bot.models import Account, VerificationAttempt, WebSession
from bot.security import code_digest, constant_time_equal, new_one_time_code, ssn_digest
from portal_fallback import sessions
from portal_fallback.app import page
from portal_fallback.sessions import SESSION, client_ip

CODE_LIFETIME = timedelta(minutes=10)
TRIES = 3
LOOKUPS_PER_WINDOW = 10
RATE_WINDOW_SECONDS = 15 * 60
_SSN = re.compile(r"^\d{3}-?\d{2}-?\d{4}$")


def add_routes(portal: web.Application) -> None:
    portal.router.add_get("/", lookup_form)
    portal.router.add_post("/lookup", lookup)
    portal.router.add_get("/verify", verify_form)
    portal.router.add_post("/verify", verify)


async def lookup_form(request: web.Request) -> web.StreamResponse:
    """Every visitor gets a session first, so even this form carries a CSRF token."""
    if request.get(SESSION) is not None:
        return page(request, "lookup.html", title="Find your account")
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        row, token = await sessions.start_session(request, db, now=now)
        await db.commit()
    request[SESSION] = row
    response = page(request, "lookup.html", title="Find your account")
    sessions.set_cookie(request, response, token)
    return response


def attempt_key(request: web.Request) -> str:
    # The verification_attempts table keys failures by "phone"; on the web it is the address.
    return f"ip:{client_ip(request) or 'unknown'}"[:20]


async def rate_limited(request: web.Request) -> bool:
    redis = request.config_dict[appkeys.COORDINATOR].redis
    key = f"paybot:rate:lookup:{client_ip(request)}"
    count = await redis.incr(key)
    if count == 1:
        await redis.expire(key, RATE_WINDOW_SECONDS)
    return count > LOOKUPS_PER_WINDOW


async def lookup(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    assert row is not None  # require_csrf let the post through, so there is a session
    if await rate_limited(request):
        return page(request, "lookup.html", 429, title="Find your account", too_many=True)
    form = await request.post()
    identifier = str(form.get("identifier") or "").strip()[:64]
    if not identifier:
        return page(request, "lookup.html", 422, title="Find your account", missing=True)
    settings = request.config_dict[appkeys.SETTINGS]
    clock = request.config_dict[appkeys.CLOCK]
    engine = request.config_dict[appkeys.ENGINE]
    now = clock.now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        if _SSN.match(identifier):
            account = await db.scalar(
                select(Account)
                .where(Account.ssn_hash == ssn_digest(settings.secret_key, identifier))
                .order_by(Account.balance_cents.desc())
                .limit(1)
            )
        else:
            account = await ledger.account_by_ref(db, identifier)
        stored = await db.get(WebSession, row.id)
        assert stored is not None
        stored.pending_account_id = account.id if account else None
        stored.pending_code_sha256 = None
        locked = await _failures(db, request, stored.pending_account_id, now) >= TRIES
        if account is not None and not locked and (account.phone or account.email):
            code = new_one_time_code()
            stored.pending_code_sha256 = code_digest(settings.secret_key, f"web:{row.id}", code)
            stored.pending_code_expires_at = now + CODE_LIFETIME
            texts_allowed = bool(account.phone) and not await ledger.is_opted_out(
                db, account.phone or ""
            )
            brand = await engine.brand_for(db, account)
            await engine.notifier.send_code(account, code, brand=brand, by_sms=texts_allowed)
        await ledger.audit(
            db, "portal_lookup", at=now, account_id=account.id if account else None, channel="web"
        )
        await db.commit()
    raise web.HTTPSeeOther("/portal/verify")


async def verify_form(request: web.Request) -> web.Response:
    row = request.get(SESSION)
    if row is None:
        raise web.HTTPSeeOther("/portal/")
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        locked = await _failures(db, request, row.pending_account_id, now) >= TRIES
    settings = request.config_dict[appkeys.SETTINGS]
    return page(request, "verify.html", title="Verify it's you", locked=locked,
                lock_minutes=settings.verification_lock_minutes)


async def verify(request: web.Request) -> web.StreamResponse:
    row = request.get(SESSION)
    assert row is not None
    form = await request.post()
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        stored = await db.get(WebSession, row.id)
        assert stored is not None
        account_id = stored.pending_account_id
        if await _failures(db, request, account_id, now) >= TRIES:
            return page(
                request,
                "verify.html",
                429,
                title="Verify it's you",
                locked=True,
                lock_minutes=settings.verification_lock_minutes,
            )
        account = await db.get(Account, account_id) if account_id else None
        method = "code" if form.get("code") else "knowledge"
        ok = False
        if account is not None and method == "code":
            code = str(form.get("code") or "").strip()[:12]
            expected = stored.pending_code_sha256 or ""
            ok = (
                bool(expected)
                and stored.pending_code_expires_at is not None
                and now < stored.pending_code_expires_at
                and constant_time_equal(
                    code_digest(settings.secret_key, f"web:{row.id}", code), expected
                )
            )
        elif account is not None:
            ok = _knowledge_matches(
                account, str(form.get("ssn_last4") or ""), str(form.get("dob") or "")
            )
        db.add(
            VerificationAttempt(
                phone=attempt_key(request), account_id=account_id, succeeded=ok, attempted_at=now
            )
        )
        if not ok:
            await ledger.audit(
                db, "verification_failed", at=now, account_id=account_id, channel="web"
            )
            await db.commit()
            left = TRIES - await _failures(db, request, account_id, now)
            if left <= 0:
                return page(
                    request,
                    "verify.html",
                    429,
                    title="Verify it's you",
                    locked=True,
                    lock_minutes=settings.verification_lock_minutes,
                )
            return page(
                request, "verify.html", 422, title="Verify it's you", wrong=True, tries_left=left
            )
        assert account is not None
        _, token = await sessions.start_session(
            request, db, now=now, account_id=account.id, verified_by=method
        )
        await ledger.audit(db, "verified", at=now, account_id=account.id, channel="web", by=method)
        await db.commit()
    response = web.HTTPSeeOther("/portal/pay")
    sessions.set_cookie(request, response, token)
    raise response


def _knowledge_matches(account: Account, last4: str, dob_text: str) -> bool:
    last4 = last4.strip()
    try:
        dob = date.fromisoformat(dob_text.strip())
    except ValueError:
        return False
    return (
        bool(account.ssn_last4)
        and account.dob is not None
        and constant_time_equal(last4, account.ssn_last4 or "")
        and dob == account.dob
    )


async def _failures(db, request: web.Request, account_id: int | None, now: datetime) -> int:  # type: ignore[no-untyped-def]
    settings = request.config_dict[appkeys.SETTINGS]
    return await ledger.recent_verification_failures(
        db,
        phone=attempt_key(request),
        account_id=account_id,
        since=now - timedelta(minutes=settings.verification_lock_minutes),
    )
