"""The console's doors: nothing under /agent/ without a session (pages redirect to sign-in, the
live feed and JSON answer 401); agents get 403 on supervisors' pages; CSRF on every form; the
sign-in limits and backoff; TOTP for supervisors; idle expiry; the cookie's flags; the audit
trail names the staff member."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from sqlalchemy import select

from bot import appkeys
from bot.ledger.models import AuditEvent, Staff, StaffSession
from bot.staff import login
from tests.console_support import PASSWORD, Console, add_staff, code_at, hidden

PAGES = ["/agent/", "/agent/inbox/waiting", "/agent/inbox/mine", "/agent/inbox/live",
         "/agent/inbox/resolved", "/agent/inbox/search?q=4821", "/agent/c/15555550100",
         "/agent/supervisor/"]


async def audit_kinds(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        rows = await session.scalars(select(AuditEvent).order_by(AuditEvent.id))
        return [(row.kind, row.actor) for row in rows if row.kind.startswith("staff_")]


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_redirects_to_sign_in_without_a_session(app, client, path):
    response = await client.get(path, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/agent/login?next=")
    assert await response.text() == "303: See Other"


async def test_the_live_feed_and_json_answer_401_without_a_session(app, client):
    response = await client.get("/agent/live", headers={"Accept": "text/event-stream"})
    assert (response.status, await response.json()) == (401, {"error": "sign in first"})
    response = await client.get("/agent/inbox/waiting", headers={"Accept": "application/json"})
    assert response.status == 401


async def test_a_posted_action_without_a_session_changes_nothing(app, client):
    response = await client.post("/agent/c/15555550100/claim", data={"csrf_token": "x"},
                                 allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/agent/login?next=/agent/"


async def test_an_agent_signs_in_sees_the_inbox_and_signs_out(app, client):
    await add_staff(app)
    console = Console(client)
    response = await console.sign_in()
    assert (response.status, response.headers["Location"]) == (303, "/agent/")
    page = await console.get("/agent/inbox/waiting")
    html = await page.text()
    assert page.status == 200 and "Ana <small>(agent)</small>" in html
    assert "Supervisor</a>" not in html
    response = await console.post("/agent/logout")
    assert (response.status, response.headers["Location"]) == (303, "/agent/login")
    assert (await console.get("/agent/inbox/waiting")).status == 303
    assert await audit_kinds(app) == [
        ("staff_added", "test"), ("staff_login", "staff:Ana"), ("staff_logout", "staff:Ana"),
    ]


async def test_the_session_cookie_is_httponly_secure_strict_and_only_a_hash_is_kept(app, client):
    await add_staff(app)
    response = await Console(client).sign_in()
    cookie = response.cookies["paybot_staff"]
    assert cookie["httponly"] is True and cookie["secure"] is True
    assert (cookie["samesite"], cookie["path"]) == ("Strict", "/agent/")
    assert len(cookie.value) >= 32  # 256 random bits, URL-safe base64
    async with app[appkeys.DATABASE].session() as session:
        (row,) = await session.scalars(select(StaffSession))
    assert cookie.value not in (row.token_sha256, row.csrf_token)


async def test_an_agent_gets_403_on_a_supervisors_page_and_a_supervisor_gets_it(app, client,
                                                                                 clock):
    await add_staff(app)
    console = Console(client)
    await console.sign_in()
    response = await console.get("/agent/supervisor/")
    assert response.status == 403
    assert "This page is for supervisors." in await response.text()

    secret = pyotp.random_base32()
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    client.session.cookie_jar.clear()
    response = await console.sign_in("sam@paybot.test", code=code_at(secret, clock.now()))
    assert response.status == 303
    assert (await console.get("/agent/supervisor/")).status == 200


async def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(app, client):
    await add_staff(app)
    console = Console(client)
    await console.sign_in()
    response = await console.post("/agent/logout", csrf="not-the-token")
    assert response.status == 403
    assert "This form has expired" in await response.text()
    assert (await console.get("/agent/inbox/waiting")).status == 200  # still signed in
    client.session.cookie_jar.clear()
    response = await client.post("/agent/login", allow_redirects=False,
                                 data={"email": "ana@paybot.test", "password": PASSWORD})
    assert response.status == 403


async def test_unknown_email_and_wrong_password_read_alike(app, client):
    await add_staff(app)
    console = Console(client)
    unknown = await console.sign_in("nobody@paybot.test", "whatever it is")
    wrong = await console.sign_in("ana@paybot.test", "not the password")
    assert unknown.status == wrong.status == 401
    assert login.FAILED in await unknown.text() and login.FAILED in await wrong.text()


async def test_repeated_failures_pause_the_account_and_back_off(app, client, clock):
    await add_staff(app)
    console = Console(client)
    for _ in range(login.LOCK_AFTER):
        assert (await console.sign_in(password="guess guess guess")).status == 401
    # Paused: even the right password is refused, in the same words.
    refused = await console.sign_in()
    assert refused.status == 401 and login.FAILED in await refused.text()
    clock.advance(timedelta(minutes=1, seconds=1))
    assert (await console.sign_in(password="one more guess!")).status == 401  # 6th: 2 minutes
    clock.advance(timedelta(minutes=1, seconds=1))
    assert (await console.sign_in()).status == 401
    clock.advance(timedelta(minutes=1))
    assert (await console.sign_in()).status == 303
    async with app[appkeys.DATABASE].session() as session:
        staff = await session.scalar(select(Staff))
        assert (staff.failed_logins, staff.locked_until) == (0, None)
        failed = list(await session.scalars(
            select(AuditEvent).where(AuditEvent.kind == "staff_login_failed")))
    assert len(failed) == 8 and all(row.actor == "staff:Ana" for row in failed)
    assert failed[-1].detail["ip"] == "127.0.0.1"


async def test_one_address_failing_too_often_is_refused_whatever_the_email(app, client):
    console = Console(client)
    for n in range(login.ADDRESS_LIMIT):
        assert (await console.sign_in(f"x{n}@paybot.test", "nope nope nope")).status == 401
    response = await console.sign_in("x@paybot.test", "nope nope nope")
    assert response.status == 429 and login.TOO_MANY in await response.text()


async def test_a_supervisor_needs_the_code_and_a_code_is_taken_once(app, client, clock):
    secret = pyotp.random_base32()
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    console = Console(client)
    first = await console.sign_in("sam@paybot.test")
    assert first.status == 200 and "Enter your code" in await first.text()
    assert "paybot_staff" not in first.cookies  # no session before the code
    wrong = await console.sign_in("sam@paybot.test", code="000000")
    assert wrong.status == 401 and login.BAD_CODE in await wrong.text()
    code = code_at(secret, clock.now())
    assert (await console.sign_in("sam@paybot.test", code=code)).status == 303
    client.session.cookie_jar.clear()
    again = await console.sign_in("sam@paybot.test", code=code)
    assert again.status == 401 and login.BAD_CODE in await again.text()


async def test_a_supervisor_without_a_second_factor_enrols_one_at_first_sign_in(app, client,
                                                                                clock):
    await add_staff(app, "sam@paybot.test", "Sam", "supervisor")
    console = Console(client)
    response = await console.sign_in("sam@paybot.test")
    html = await response.text()
    assert "Set up your second factor" in html and "otpauth://totp/" in html
    secret = html.split('id="totp-secret">', 1)[1].split("<", 1)[0]
    response = await client.post("/agent/login/code", allow_redirects=False, data={
        "csrf_token": hidden(html, "csrf_token"), "ticket": hidden(html, "ticket"),
        "code": code_at(secret, clock.now()), "next": "/agent/"})
    assert response.status == 303
    async with app[appkeys.DATABASE].session() as session:
        staff = await session.scalar(select(Staff))
    assert staff.totp_secret and secret not in staff.totp_secret  # kept sealed


async def test_a_session_ends_after_the_idle_time_and_activity_keeps_it(app, client, clock):
    await add_staff(app)
    console = Console(client)
    await console.sign_in()
    clock.advance(timedelta(minutes=29))
    assert (await console.get("/agent/inbox/waiting")).status == 200
    clock.advance(timedelta(minutes=29))
    assert (await console.get("/agent/inbox/waiting")).status == 200
    clock.advance(timedelta(minutes=30))
    response = await console.get("/agent/inbox/waiting")
    assert response.status == 303 and response.headers["Location"].startswith("/agent/login")


async def test_a_setup_link_sets_the_password_once(app, client):
    from bot.staff import accounts

    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        added = await accounts.add(session, "bo@paybot.test", "Bo", "agent", at=now, by="test")
        await session.commit()
    path = accounts.setup_path(added.setup_token)
    page = await client.get(path)
    html = await page.text()
    assert page.status == 200 and "Set up your account" in html
    short = await client.post(path, data={"csrf_token": hidden(html, "csrf_token"),
                                          "password": "short", "password_again": "short"})
    assert short.status == 400 and "Use at least 12 characters." in await short.text()
    done = await client.post(path, allow_redirects=False, data={
        "csrf_token": hidden(html, "csrf_token"), "password": PASSWORD,
        "password_again": PASSWORD})
    assert (done.status, done.headers["Location"]) == (303, "/agent/login?done=setup")
    assert (await client.get(path)).status == 410
    assert (await Console(client).sign_in("bo@paybot.test")).status == 303


async def test_console_pages_carry_the_security_headers(app, client):
    response = await client.get("/agent/login")
    assert response.headers["Content-Security-Policy"].startswith(
        "default-src 'self'; script-src 'self'; style-src 'self'")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
