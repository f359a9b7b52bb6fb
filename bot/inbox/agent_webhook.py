"""Events for the agents' own desk (PAYBOT_AGENT_WEBHOOK_URL): written in the transaction that
makes them true, delivered and retried by the worker (bot/worker/agent_webhook_pass.py).

Events: ``needs_agent`` (``phone``, ``account_id``, ``reason``, ``text``), ``customer_message``
(``phone``, ``account_id``, ``text``, ``channel``: the customer wrote while waiting for or with
an agent) and ``resolved`` (``phone``, ``account_id``, ``by``). Each body is a JSON object with
``event``, ``at`` (ISO 8601, UTC), ``id`` (the delivery's id: a retry sends the same id, so a
receiver drops what it has seen) and the fields above.

Signature: the header ``PayBot-Signature: t=TIMESTAMP,v1=HEX`` where TIMESTAMP is the Unix time
of the attempt and HEX the HMAC-SHA256, keyed with PAYBOT_AGENT_WEBHOOK_SECRET, of
``TIMESTAMP + "." + raw body``. A receiver recomputes it over the bytes it received, compares in
constant time, and refuses a timestamp more than 5 minutes old (``verify`` does all three).

Delivery: a 2xx answer is delivered; anything else (an error status, a timeout, no connection)
is tried again after 30 s, 1, 2, 4 ... minutes (at most an hour apart) until MAX_ATTEMPTS, then
the row is ``failed`` and kept. Without a URL nothing is queued: rows never pile up for nobody.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Account, AgentWebhookDelivery

log = logging.getLogger(__name__)

EVENTS = ("needs_agent", "customer_message", "resolved")
HEADER = "PayBot-Signature"
# The session's info says whether the deployment has a URL (set on the app's Database by
# ``configure``): the domain's callers (handoffs) do not carry the settings.
ENABLED = "paybot.agent_webhook"
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)
# A claimed row is not taken by another worker for this long (the POST's own timeout is less).
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0
TOLERANCE_SECONDS = 300
BATCH = 50


def configure(database: Database, settings: Settings) -> None:
    """Tell the database's sessions whether events are queued (a URL is set)."""
    database.sessions.configure(info={ENABLED: bool(settings.agent_webhook_url)})


async def enqueue(
    session: AsyncSession, event: str, payload: dict[str, Any], *, at: datetime
) -> None:
    """Queue ``event`` for the worker to deliver, in the caller's transaction; nothing when no
    PAYBOT_AGENT_WEBHOOK_URL is configured (``configure`` was not told of one)."""
    if event not in EVENTS:
        raise ValueError(f"unknown agent webhook event {event!r}")
    if not session.info.get(ENABLED):
        return
    if isinstance(payload.get("account_id"), int):
        # The desk knows accounts by their reference (the REST API's account_id), not our row id.
        payload = {**payload, "account_id": await session.scalar(
            select(Account.account_ref).where(Account.id == payload["account_id"])
        )}
    session.add(
        AgentWebhookDelivery(
            event=event,
            payload={"event": event, "at": at.isoformat(), **payload},
            status="queued",
            attempts=0,
            next_attempt_at=at,
            created_at=at,
        )
    )


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float | None = None,
           tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does (tests, and any Python desk): the signature is ours and fresh."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def retry_after(attempts: int) -> timedelta:
    """Exponential backoff: 30 s after the first failure, doubling, at most an hour."""
    return min(FIRST_RETRY * (2 ** max(0, attempts - 1)), LONGEST_WAIT)


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


async def _claim_due(database: Database, now: datetime, limit: int) -> list[tuple[int, dict]]:
    """Take due rows under a lease, committed before any POST: two workers never send one row
    at once (SKIP LOCKED on PostgreSQL; SQLite has one writer)."""
    async with database.writer(), database.session() as session:
        rows = list(await session.scalars(
            select(AgentWebhookDelivery)
            .where(AgentWebhookDelivery.status == "queued",
                   AgentWebhookDelivery.next_attempt_at <= now)
            .order_by(AgentWebhookDelivery.next_attempt_at, AgentWebhookDelivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ))
        for row in rows:
            row.attempts += 1
            row.next_attempt_at = now + LEASE
        await session.commit()
        return [(row.id, {**row.payload, "id": row.id}) for row in rows]


async def _post(
    http: aiohttp.ClientSession, settings: Settings, payload: dict, now: datetime
) -> str | None:
    """None when delivered, else what went wrong (kept on the row, never the secret)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "PayBot-AgentWebhook/1"}
    if settings.agent_webhook_secret:
        headers[HEADER] = sign(settings.agent_webhook_secret, body, int(now.timestamp()))
    try:
        async with http.post(settings.agent_webhook_url or "", data=body, headers=headers,
                             allow_redirects=False) as answer:
            if 200 <= answer.status < 300:
                return None
            return f"HTTP {answer.status}"
    except TimeoutError:
        return "timed out"
    except aiohttp.ClientError as exc:
        return f"not reached: {type(exc).__name__}"


async def deliver_due(
    database: Database, settings: Settings, *, now: datetime, limit: int = BATCH,
    http: aiohttp.ClientSession | None = None,
) -> DeliveryReport:
    """Send what is due (one batch); record each outcome."""
    report = DeliveryReport()
    if not settings.agent_webhook_url:
        return report
    due = await _claim_due(database, now, limit)
    if not due:
        return report
    own = http is None
    http = http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
    try:
        outcomes = [
            (row_id, await _post(http, settings, payload, now)) for row_id, payload in due
        ]
    finally:
        if own:
            await http.close()
    async with database.writer(), database.session() as session:
        for row_id, error in outcomes:
            row = await session.get(AgentWebhookDelivery, row_id)
            if row is None:
                continue
            if error is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
                report.sent += 1
            elif row.attempts >= MAX_ATTEMPTS:
                row.status, row.last_error = "failed", error
                report.failed += 1
                log.warning("agents' webhook event %d (%s) failed after %d attempts: %s",
                            row.id, row.event, row.attempts, error)
            else:
                row.next_attempt_at, row.last_error = now + retry_after(row.attempts), error
                report.retrying += 1
        await session.commit()
    return report
