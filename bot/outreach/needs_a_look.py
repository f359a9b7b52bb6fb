"""Proactive messages that need a person (`paybot outreach list` and `resend`): ``failed`` (every
channel refused at the provider, ``MAX_ATTEMPTS`` times) and ``unknown`` (cut off mid-send: the
process stopped between the claim and the write-back, so whether it left is not known; marked by
the worker's ``email_outbox.mark_cut_off``). A resend puts the row back in the queue, due now,
its tries counted afresh; it then goes through the same step as any other (``deliver_due``):
opt-outs, quiet hours in the customer's time zone, the offer still open."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.ledger import queries as ledger
from bot.ledger.models import Outreach

NEEDS_A_LOOK = ("failed", "unknown")


class CannotResend(Exception):
    """A row `requeue` will not send again, and why (one line for the operator)."""


async def recent(
    session: AsyncSession, *, statuses: tuple[str, ...] = NEEDS_A_LOOK,
    account_id: int | None = None, limit: int = 50,
) -> list[Outreach]:
    """Newest first, in these statuses."""
    query = (select(Outreach).where(Outreach.status.in_(statuses))
             .order_by(Outreach.id.desc()).limit(limit))
    if account_id is not None:
        query = query.where(Outreach.account_id == account_id)
    return list(await session.scalars(query))


async def requeue(session: AsyncSession, outreach_id: int, *, at: datetime,
                  actor: str) -> Outreach:
    """Queue a failed or unknown row again, due at ``at`` (no commit)."""
    row = await session.get(Outreach, outreach_id)
    if row is None:
        raise CannotResend(f"no outreach {outreach_id}")
    if row.status not in NEEDS_A_LOOK:
        why = {"held": "it is queued already", "sending": "it is being sent now",
               "sent": "it was sent", "skipped": "it was skipped on purpose"}.get(
                   row.status, f"it is {row.status}")
        raise CannotResend(f"outreach {outreach_id} is {row.status}: {why}; only failed or "
                           "unknown ones are sent again")
    detail = {**(row.detail or {}), "attempts": 0, "resent_from": row.status}
    row.status, row.not_before, row.sent_at, row.detail = "held", at, None, detail
    await ledger.audit(session, "outreach_requeued", at=at, actor=actor[:40],
                       account_id=row.account_id, outreach_id=row.id, message=row.kind)
    return row
