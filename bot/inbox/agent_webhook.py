"""Events for the agents' own desk (PAYBOT_AGENT_WEBHOOK_URL): written in the transaction that
makes them true, delivered and retried by the worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger.models import AgentWebhookDelivery

EVENTS = ("needs_agent", "customer_message", "resolved")


async def enqueue(
    session: AsyncSession, event: str, payload: dict[str, Any], *, at: datetime
) -> None:
    """Queue ``event`` for the worker to deliver. (Issue 14 slice owner: decide what happens
    without PAYBOT_AGENT_WEBHOOK_URL; rows must not pile up for nobody.)"""
    if event not in EVENTS:
        raise ValueError(f"unknown agent webhook event {event!r}")
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
