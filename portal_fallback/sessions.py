"""Web sessions of the portal: a random cookie token (hashed in the ledger), CSRF, rotation.

A session is rotated whenever who it belongs to changes (a link opened, a second factor passed):
the old token stops working, so a token seen before verification is worth nothing after it.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.ledger.models import WebSession
from bot.security import constant_time_equal, token_digest

COOKIE = "paybot_session"
# Before any session: the look-up form's CSRF token, also kept in this cookie (double submit), so
# a visit that only reads the form stores nothing; the session begins with the look-up itself.
FORM_COOKIE = "paybot_form"
IDLE_LIFETIME = timedelta(minutes=30)
SESSION = web.RequestKey("portal_session", WebSession)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def client_ip(request: web.Request) -> str | None:
    """The client's address, for everything that records or limits by address.

    X-Forwarded-For is believed only when the socket's peer is one of PAYBOT_TRUSTED_PROXIES:
    then the client is the rightmost hop that is not a trusted proxy (each proxy appends the
    address it saw; what lies to the left of that is whatever the client chose to write).
    Otherwise, and when a hop is not an address at all, the nearest address seen is the client.
    """
    trusted = request.config_dict[appkeys.SETTINGS].trusted_proxies
    nearest = _address(request.remote)
    if nearest is None:
        return request.remote
    if not trusted or not _within(nearest, trusted):
        return str(nearest)
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
    ]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break
        nearest = address
        if not _within(address, trusted):
            break
    return str(nearest)


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):  # "[2001:db8::1]:443", as some proxies write it
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
) -> bool:
    return any(address in network for network in networks)


async def load_session(
    session: AsyncSession, token: str | None, now: datetime
) -> WebSession | None:
    if not token or len(token) > 100:
        return None
    row = await session.scalar(
        select(WebSession).where(WebSession.token_sha256 == token_digest(token))
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


async def ended_link_session(
    session: AsyncSession, token: str | None, now: datetime
) -> WebSession | None:
    """The session behind ``token`` if it was opened by a link and has run out (not signed
    out): its page then says why, as the link itself would, instead of starting over."""
    if not token or len(token) > 100:
        return None
    row = await session.scalar(
        select(WebSession).where(WebSession.token_sha256 == token_digest(token))
    )
    if row is None or row.revoked_at is not None or row.expires_at > now or row.link_id is None:
        return None
    return row


async def start_session(
    request: web.Request,
    session: AsyncSession,
    *,
    now: datetime,
    account_id: int | None = None,
    verified_by: str | None = None,
    link_id: int | None = None,
    ends_by: datetime | None = None,
) -> tuple[WebSession, str]:
    """A fresh session (and token); whatever session the browser had is revoked. ``ends_by``:
    the session lives no longer than that (the expiry of the link that opened it)."""
    old = await load_session(session, request.cookies.get(COOKIE), now)
    if old is not None:
        old.revoked_at = now
    token = secrets.token_urlsafe(32)
    row = WebSession(
        token_sha256=token_digest(token),
        csrf_token=secrets.token_urlsafe(32),
        account_id=account_id,
        verified_by=verified_by,
        link_id=link_id,
        ip_address=client_ip(request),
        user_agent=(request.headers.get("User-Agent") or "")[:400] or None,
        created_at=now,
        expires_at=session_end(now, ends_by),
    )
    session.add(row)
    await session.flush()
    return row, token


def session_end(now: datetime, ends_by: datetime | None) -> datetime:
    """Idle time is what counts, but never past ``ends_by`` (the link's own expiry)."""
    end = now + IDLE_LIFETIME
    return min(end, ends_by) if ends_by is not None else end


def set_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.config_dict[appkeys.SETTINGS]
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        secure=settings.public_base_url.startswith("https://"),
        samesite="Lax",  # Strict would drop the cookie on the first tap from an SMS or email
        path="/",
        max_age=int(IDLE_LIFETIME.total_seconds()),
    )


def form_token(request: web.Request) -> str:
    """The look-up form's token for a browser without a session (its cookie's, or a new one)."""
    token = request.cookies.get(FORM_COOKIE, "")
    return token if 30 <= len(token) <= 100 else secrets.token_urlsafe(32)


def set_form_cookie(request: web.Request, response: web.StreamResponse, token: str) -> None:
    settings = request.config_dict[appkeys.SETTINGS]
    response.set_cookie(
        FORM_COOKIE,
        token,
        httponly=True,
        secure=settings.public_base_url.startswith("https://"),
        samesite="Strict",  # only ever posted from our own form
        path="/portal/",
        max_age=int(IDLE_LIFETIME.total_seconds()),
    )


def form_token_ok(request: web.Request, submitted: str | None) -> bool:
    cookie = request.cookies.get(FORM_COOKIE, "")
    return 30 <= len(cookie) <= 100 and bool(submitted) and constant_time_equal(
        cookie, submitted or ""
    )


def csrf_ok(row: WebSession | None, submitted: str | None) -> bool:
    return (
        row is not None and bool(submitted) and constant_time_equal(row.csrf_token, submitted or "")
    )
