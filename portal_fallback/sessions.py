"""Web sessions of the portal: a random cookie token (hashed in the ledger), CSRF, rotation.

A session is rotated whenever who it belongs to changes (a link opened, a second factor passed):
the old token stops working, so a token seen before verification is worth nothing after it.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import appkeys
from bot.models import WebSession
from bot.security import constant_time_equal, token_digest

COOKIE = "paybot_session"
IDLE_LIFETIME = timedelta(minutes=30)
SESSION = web.RequestKey("portal_session", WebSession)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def client_ip(request: web.Request) -> str | None:
    # Behind a load balancer the first X-Forwarded-For hop is the client; trusted only because
    # PayBot is deployed behind one (PUBLIC_BASE_URL); without it, the socket's peer.
    forwarded = request.headers.get("X-Forwarded-For", "")
    if forwarded:
        return forwarded.split(",")[0].strip()[:45] or None
    return request.remote


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


async def start_session(
    request: web.Request,
    session: AsyncSession,
    *,
    now: datetime,
    account_id: int | None = None,
    verified_by: str | None = None,
    link_id: int | None = None,
) -> tuple[WebSession, str]:
    """A fresh session (and token); whatever session the browser had is revoked."""
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
        expires_at=now + IDLE_LIFETIME,
    )
    session.add(row)
    await session.flush()
    return row, token


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


def csrf_ok(row: WebSession | None, submitted: str | None) -> bool:
    return (
        row is not None and bool(submitted) and constant_time_equal(row.csrf_token, submitted or "")
    )
