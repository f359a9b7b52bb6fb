"""The ledger: one schema for SQLite and PostgreSQL (migrations in bot/ledger/migrations)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeDecorator

from bot.config.flow import check_creditor_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, whatever the backend keeps (SQLite keeps naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class Creditor(Base):
    __tablename__ = "creditors"

    code: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # Reg F: the first message says it is from a debt collector; wording set per creditor.
    disclosure: Mapped[str] = mapped_column(Text, default="")
    # The name customers know the messages by (HELP, the console); the creditor's name if empty.
    brand: Mapped[str] = mapped_column(String(120), default="", server_default="")
    # Where a customer reaches a person (HELP's support contact): a phone number or an address.
    support_contact: Mapped[str] = mapped_column(String(200), default="", server_default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)

    @property
    def shown_name(self) -> str:
        """What customers read as the sender: the brand, else the creditor's name."""
        return " ".join((self.brand or self.name or "").split())

    @validates("settings")
    def _checked(self, _: str, value: dict[str, Any] | None) -> dict[str, Any]:
        # Checked whenever they are written (import, API, demo, CLI, a test): a bad key is
        # refused, named, instead of being found later in a customer's conversation.
        return check_creditor_settings(value)


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_ref: Mapped[str] = mapped_column(String(64), unique=True)
    creditor_code: Mapped[str | None] = mapped_column(ForeignKey("creditors.code"))
    description: Mapped[str] = mapped_column(String(120), default="")
    first_name: Mapped[str] = mapped_column(String(80))
    last_name: Mapped[str] = mapped_column(String(80))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    balance_cents: Mapped[int] = mapped_column(BigInteger)
    ssn_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    ssn_last4: Mapped[str | None] = mapped_column(String(4))
    dob: Mapped[date | None] = mapped_column(Date)
    zip_code: Mapped[str | None] = mapped_column(String(10))
    # None when the creditor did not say: quiet hours then hold in every US zone (Reg F), and
    # dates are shown in Eastern time.
    timezone: Mapped[str | None] = mapped_column(String(64))
    processor_customer_id: Mapped[str | None] = mapped_column(String(64))
    # The language the creditor loaded (`en` | `es`); a conversation may choose another
    # (conversations.language), which then wins for texts, pages and emails.
    language: Mapped[str] = mapped_column(String(2), default="en", server_default="en")
    # When the creditor last loaded a balance (CSV or API): a figure loaded later is taken to
    # show what PayBot collected before this, not after (loaded_balance in
    # bot/payments/collectable.py).
    # None on rows older than the column: their created_at stands in.
    balance_loaded_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    creditor: Mapped[Creditor | None] = relationship(lazy="raise")


class Offer(Base):
    __tablename__ = "offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # settlement | plan
    total_cents: Mapped[int] = mapped_column(BigInteger)
    installment_count: Mapped[int] = mapped_column(Integer, default=1)
    frequency: Mapped[str | None] = mapped_column(String(20))  # weekly | biweekly | monthly
    expires_at: Mapped[datetime | None]
    # open -> accepted (signed) | expired | withdrawn
    status: Mapped[str] = mapped_column(String(20), default="open")
    created_at: Mapped[datetime]
    # An offer made for this customer (by an agent or an operator) carries its exact schedule:
    # [["2026-12-15", 20834], ...] (ISO date, cents), adding up to total_cents. Offers without
    # one (the standing offers of an import) are scheduled from the day the customer chooses.
    schedule: Mapped[list[Any] | None] = mapped_column(JSON)
    # A settlement expressed as a share off the balance, in basis points (2500 = 25 % off).
    discount_bps: Mapped[int | None] = mapped_column(Integer)
    # What a customer may change by text on the plan this offer becomes (see bot/plans/signing.py).
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(40))
    sent_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]


class PaymentMethod(Base):
    __tablename__ = "payment_methods"
    __table_args__ = (UniqueConstraint("account_id", "processor_ref"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    processor_ref: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))  # card | us_bank_account | paypal
    brand: Mapped[str] = mapped_column(String(30))
    last4: Mapped[str] = mapped_column(String(4))
    # What a customer is shown for a method without last 4 digits (a PayPal account: its email,
    # masked when saved); None for cards and banks.
    label: Mapped[str | None] = mapped_column(String(120))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Added by a session proved only by knowledge answers (SSN last 4 + date of birth): it pays
    # that one payment, now, and is never listed or chosen afterwards, unless a session proved
    # by a code or a link saves it again.
    single_use: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime]

    @property
    def description(self) -> str:
        """How a person is told which method: "Visa ending 4242", "PayPal (m***@example.com)"."""
        if self.kind == "paypal":
            return f"PayPal ({self.label})" if self.label else "PayPal"
        return f"{self.brand} ending {self.last4}"


class Plan(Base):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    installment_count: Mapped[int] = mapped_column(Integer)
    frequency: Mapped[str] = mapped_column(String(20))
    method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    # active -> completed | canceled
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime]
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    skips_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    canceled_at: Mapped[datetime | None]
    canceled_by: Mapped[str | None] = mapped_column(String(40))
    cancel_reason: Mapped[str | None] = mapped_column(String(200))


class Payment(Base):
    """One charge, now or scheduled. The idempotency key is the double-charge guard."""

    __tablename__ = "payments"
    __table_args__ = (Index("ix_payments_due", "status", "scheduled_for"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(16), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    installment_number: Mapped[int | None] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    # A convenience fee is charged on top of the amount and never lowers the balance.
    fee_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # What was given back (bot/payments/refunds.py); the balance rose by as much.
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    scheduled_for: Mapped[date]
    # scheduled -> processing -> paid | pending | declined ; pending -> paid | declined ; canceled
    status: Mapped[str] = mapped_column(String(20))
    processor_id: Mapped[str | None] = mapped_column(String(64), index=True)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(10), default="sms")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    method: Mapped[PaymentMethod | None] = relationship(lazy="raise")


class Agreement(Base):
    """Kept as signed: rows are only ever inserted."""

    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    terms_version: Mapped[str] = mapped_column(String(20))
    text_sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    signer_name: Mapped[str] = mapped_column(String(160))
    signature_kind: Mapped[str] = mapped_column(String(20))  # sms_reply | typed | drawn
    # typed: the name as typed; drawn: a PNG as a data: URL; sms_reply: the reply's text
    signature_data: Mapped[str | None] = mapped_column(Text)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"), index=True)
    # E-SIGN: when the customer consented to electronic records (before signing)
    esign_consent_at: Mapped[datetime | None]
    channel: Mapped[str] = mapped_column(String(10))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    signed_at: Mapped[datetime]


class Conversation(Base):
    """The checkpoint of one phone number's conversation: flow state survives the loss of Redis."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    flow: Mapped[str] = mapped_column(String(20), default="verification")
    state: Mapped[str] = mapped_column(String(40), default="new")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # bot (the bot answers) | waiting (asked for a person, unclaimed: the bot still answers
    # MENU, PAY, BALANCE and LINK) | agent (a person owns it: the bot is silent but for STOP
    # and HELP) | resolved (a person handed it back; the bot answers, as with bot)
    status: Mapped[str] = mapped_column(String(10), default="bot", server_default="bot")
    # Why it was handed over: asked | confused | wrong_number | hardship | dispute | ...
    reason: Mapped[str | None] = mapped_column(String(20))
    waiting_since: Mapped[datetime | None]
    assignee: Mapped[str | None] = mapped_column(String(80))  # the owning agent's name
    # The open handoff (handoffs.id) while waiting or with an agent; no foreign key, as the
    # handoff points back at its conversation.
    handoff_id: Mapped[int | None] = mapped_column(Integer)
    # The language this phone chose (ESPAÑOL / ENGLISH, or a detected Spanish message once
    # confirmed); None follows the account's. `language_asked_at`: when the bot offered
    # Spanish on a detected message, so it is offered once.
    language: Mapped[str | None] = mapped_column(String(2))
    language_asked_at: Mapped[datetime | None]
    # The payment link this conversation last handed out (bot/sms/live_link.py), re-sent while
    # it is good rather than a new one per prompt: found by its key, not by reading texts back.
    # Its raw token is kept sealed (AES-GCM, keyed from SECRET_KEY), as links are otherwise
    # stored only as hashes; SET NULL so that purging links never trips on a conversation.
    live_link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id", ondelete="SET NULL"))
    live_link_sealed: Mapped[str | None] = mapped_column(String(160))
    # Set with a link not yet flushed, so the link's INSERT and this row's UPDATE go out in the
    # turn's one flush; never loaded through here (the turn reads the link by its key).
    live_link: Mapped[Link | None] = relationship(foreign_keys=[live_link_id], lazy="raise")
    last_inbound_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Message(Base):
    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    direction: Mapped[str] = mapped_column(String(10))  # inbound | outbound
    channel: Mapped[str] = mapped_column(String(10), default="sms")
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    in_reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    processed_at: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[str | None] = mapped_column(String(10))
    # customer | bot | agent:NAME | system (None on rows older than the column: read the
    # direction)
    author: Mapped[str | None] = mapped_column(String(90))
    created_at: Mapped[datetime]


class Handoff(Base):
    """One request for a person, from asking to resolution: the queue's history, and what the
    dashboard measures (handoffs by reason, time to the first agent reply)."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_requested", "requested_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    reason: Mapped[str] = mapped_column(String(20))
    requested_at: Mapped[datetime]
    # The customer was told no one claimed it in time; the bot answers again meanwhile.
    timed_out_at: Mapped[datetime | None]
    # The customer came back to the bot while waiting (MENU, PAY, BALANCE, LINK, or the wait
    # ran out): the bot answers, and the request stays in the queue until an agent resolves it.
    bot_resumed_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    first_reply_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(90))  # agent:NAME | customer | ...


class Note(Base):
    """A private note on a conversation: staff read it, the customer never does."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), index=True)
    author: Mapped[str] = mapped_column(String(80))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class CannedReply(Base):
    """A reply agents insert with one click; {first_name}, {balance}, {link}... are filled in
    from the account when it is used."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shortcut: Mapped[str] = mapped_column(String(40), unique=True)
    body: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime]


class WrongNumber(Base):
    """A number that is not the account holder's (TCPA reassigned numbers): it is unlinked from
    the account and never texted about it again, whatever a later import says."""

    __tablename__ = "wrong_numbers"
    __table_args__ = (UniqueConstraint("phone", "account_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    reported_by: Mapped[str] = mapped_column(String(90))  # customer | agent:NAME
    reported_at: Mapped[datetime]


class Staff(Base):
    """A person at the console: an agent or a supervisor (bot/staff)."""

    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower case
    name: Mapped[str] = mapped_column(String(80), unique=True)  # shown as agent:NAME
    role: Mapped[str] = mapped_column(String(20))  # agent | supervisor
    password_hash: Mapped[str | None] = mapped_column(String(200))  # Argon2id
    totp_secret: Mapped[str | None] = mapped_column(String(200))  # sealed with SECRET_KEY
    # A one-time link sets the password (and, for a supervisor, the second factor).
    setup_token_sha256: Mapped[str | None] = mapped_column(String(64), unique=True)
    setup_expires_at: Mapped[datetime | None]
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class StaffSession(Base):
    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff.id"), index=True)
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]  # idle expiry counts from here
    expires_at: Mapped[datetime]  # absolute expiry
    revoked_at: Mapped[datetime | None]


class Refund(Base):
    """Money given back on a Paid payment, full or partial; the idempotency key makes a second
    request for the same refund find this row instead of refunding twice."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    # requested (written before the processor is asked) -> succeeded | pending | failed
    status: Mapped[str] = mapped_column(String(20))
    processor_ref: Mapped[str | None] = mapped_column(String(64))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(90))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AgentWebhookDelivery(Base):
    """An event for the agents' own desk (PAYBOT_AGENT_WEBHOOK_URL), kept until delivered and
    retried with backoff by the worker."""

    __tablename__ = "agent_webhook_deliveries"
    __table_args__ = (Index("ix_agent_webhook_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(30))  # needs_agent | customer_message | resolved
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20))  # queued -> sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class Link(Base):
    __tablename__ = "links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    # payment | campaign | demo (the payment flow) | plan_offer (its signing) | update_method
    purpose: Mapped[str] = mapped_column(String(20), default="payment")
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"), index=True)
    resume_state: Mapped[str | None] = mapped_column(String(40))
    amount_cents: Mapped[int | None] = mapped_column(BigInteger)
    allow_amount_change: Mapped[bool] = mapped_column(Boolean, default=True)
    fee_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    due_on: Mapped[date | None] = mapped_column(Date)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    used_at: Mapped[datetime | None]  # its preset payment was made: the link's purpose is done
    created_at: Mapped[datetime]


class OptOut(Base):
    """Current consent of one number; the history is in audit_events."""

    __tablename__ = "opt_outs"

    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    opted_out: Mapped[bool] = mapped_column(Boolean)
    keyword: Mapped[str | None] = mapped_column(String(160))
    channel: Mapped[str] = mapped_column(String(20), default="sms")
    updated_at: Mapped[datetime]


class VerificationAttempt(Base):
    """One answer to a second-factor challenge (bot/accounts/second_factor.py). A client's wait is
    read from its failures on one subject; a challenge's tries from the failures against it."""

    __tablename__ = "verification_attempts"
    __table_args__ = (
        Index("ix_verification_phone_at", "phone", "attempted_at"),
        Index("ix_verification_subject_client_at", "subject", "client", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phone: Mapped[str | None] = mapped_column(String(20))  # the texting number (SMS only)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # "account:ID", or "ref:HMAC" of an identifier that matched nothing (treated alike)
    subject: Mapped[str | None] = mapped_column(String(80))
    client: Mapped[str | None] = mapped_column(String(64))  # "ip:ADDRESS" or "sms:+1..."
    challenge: Mapped[str | None] = mapped_column(String(32), index=True)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    attempted_at: Mapped[datetime]


class CodeSend(Base):
    """A second-factor challenge handed out, once per cap it counts against (the account or
    identifier asked for, each destination a code may reach): bot/accounts/second_factor.py."""

    __tablename__ = "code_sends"
    __table_args__ = (Index("ix_code_sends_cap_key_at", "cap_key", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cap_key: Mapped[str] = mapped_column(String(260))
    purpose: Mapped[str] = mapped_column(String(30))
    sent_at: Mapped[datetime]


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebSession(Base):
    """A browser's session on the portal; the cookie holds a random token, we keep its hash."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    verified_by: Mapped[str | None] = mapped_column(String(20))  # link | code | knowledge
    link_id: Mapped[int | None] = mapped_column(ForeignKey("links.id"))
    # Portal look-up before the second factor: the account asked for, and the code's hash.
    pending_account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    pending_code_sha256: Mapped[str | None] = mapped_column(String(64))
    pending_code_expires_at: Mapped[datetime | None]
    pending_subject: Mapped[str | None] = mapped_column(String(80))  # bot/accounts/second_factor.py
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ProcessedEvent(Base):
    """Webhook events already handled (Stripe, SendGrid): a retry is acknowledged, not redone."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(60))
    received_at: Mapped[datetime]


class EmailOptOut(Base):
    """Email consent of one address (an unsubscribe, a spam report, a hard bounce)."""

    __tablename__ = "email_opt_outs"

    address: Mapped[str] = mapped_column(String(254), primary_key=True)  # lower case
    opted_out: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(String(40))  # unsubscribe | spamreport | bounce | ...
    updated_at: Mapped[datetime]


class Outreach(Base):
    """One proactive message (offer, reminder, expiry notice, cancellation...), at most once.

    The dedupe key (e.g. ``reminder:42:2``) makes a message that two workers or a retry would
    both send go out once; the rows also count against the per-customer frequency cap. A message
    held by quiet hours or the cap stays ``held`` with the time it may go out.
    """

    __tablename__ = "outreach"
    __table_args__ = (Index("ix_outreach_account_sent", "account_id", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offers.id"))
    plan_id: Mapped[int | None] = mapped_column(ForeignKey("plans.id"))
    kind: Mapped[str] = mapped_column(String(30))  # offer | reminder | expired | canceled | ...
    channel: Mapped[str] = mapped_column(String(10))  # sms | email | both
    # held -> sent | skipped (opted out, nothing to send to, offer no longer open)
    status: Mapped[str] = mapped_column(String(20))
    not_before: Mapped[datetime | None]
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class OutboundEmail(Base):
    """An email that records something the ledger did (a receipt, a decline, a cancellation),
    written in the transaction that makes it true and sent after the commit; the worker sends
    what a stopped process left ``queued`` (bot/outreach/email_outbox.py).

    queued -> sending (claimed, committed before the provider is called) -> sent | skipped
    (the address opted out of a non-transactional email) | queued again, later (the provider
    refused) | failed (refused ``MAX_ATTEMPTS`` times). A row left ``sending`` by a crash during
    the provider's call is never sent again (at most one copy leaves): the worker marks it
    ``unknown`` for a person to look at.
    """

    __tablename__ = "outbound_emails"
    __table_args__ = (Index("ix_outbound_emails_status", "status", "not_before"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(30))  # receipt | decline | plan_canceled
    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str] = mapped_column(Text)
    # Encrypted bodies (a personal link inside), wiped when the row is done: email_outbox.Seal.
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    transactional: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]  # the worker leaves a fresh row to the process that wrote it
    created_at: Mapped[datetime]
    claimed_at: Mapped[datetime | None]  # the last claim: a row `sending` for long was cut off
    sent_at: Mapped[datetime | None]
    provider_message_id: Mapped[str | None] = mapped_column(String(100))
