"""What every flow's turns share: the process's services (settings, ledger, lock, processor,
notifier, clock, renderer) and the records one message passes along (the stored inbound
message, the turn's replies and after-effects, the web step's answer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.accounts import second_factor
from bot.config.settings import Settings
from bot.coordination import Coordinator
from bot.ledger.db import Database
from bot.ledger.models import Conversation, OutboundEmail
from bot.outreach import email_outbox
from bot.outreach.notifications import Notifier
from bot.payments.service import PaymentOutcome, PaymentService
from bot.text.rendering import SmsRenderer
from states.payment import PaymentFlow
from states.replies import Reply

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredInbound:
    """An inbound message once it is in the ledger: what a turn reads of it."""

    id: int
    phone: str
    body: str


@dataclass(frozen=True)
class Inbound:
    phone: str  # E.164
    body: str
    sid: str | None = None  # the provider's id; the terminal chat makes one up
    channel: str = "sms"


@dataclass
class WebStep:
    flow: PaymentFlow  # where the flow stands now, to render the page
    notices: list[Reply]  # what the step said (errors, results), by template name
    outcome: PaymentOutcome | None = None
    brand: str | None = None  # the creditor's name, for the page header
    stale: bool = False  # the form was for a step the flow had left: nothing was done


@dataclass
class Turn:
    """What one message produced, before it is rendered."""

    channel: str = "sms"
    verified_by: str | None = None  # how a web session proved who it is (link, code, knowledge)
    ip_address: str | None = None
    user_agent: str | None = None
    replies: list[Reply] = field(default_factory=list)
    # Receipts, written in the transaction that records their payment; sent after the reply.
    queued_emails: list[OutboundEmail] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    outcome: PaymentOutcome | None = None
    agreement_copies: list[int] = field(default_factory=list)  # plans signed: email the copy
    # Verification codes, sent after the reply: how long a reply takes says nothing of whether
    # an account exists.
    codes: list[second_factor.CodeToSend] = field(default_factory=list)
    # The language this turn answers in when it is not the conversation's own: a first message
    # that reads as Spanish is answered in Spanish (and Spanish offered) before anyone chose it.
    language: str | None = None


@dataclass(frozen=True)
class TurnContext:
    """Where one message (or one web step) is worked: its transaction, its conversation (the
    checkpoint), the turn its replies and after-effects are gathered in, and its time. Each
    flow's turns get it explicitly, with the account they act on."""

    session: AsyncSession
    conv: Conversation
    turn: Turn
    now: datetime


@dataclass
class Services:
    """The process's dependencies, handed to each flow's turns explicitly."""

    settings: Settings
    db: Database
    coordinator: Coordinator
    payments: PaymentService
    notifier: Notifier
    clock: Any
    renderer: SmsRenderer

    async def deliver_emails(self, turn: Turn) -> None:
        try:
            await email_outbox.deliver(
                self.db, self.notifier, [row.id for row in turn.queued_emails], clock=self.clock
            )
        except Exception:  # the payment stands; the worker sends what is still queued
            log.exception("the emails of a turn were not sent; left to the worker")
