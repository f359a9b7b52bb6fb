"""What the REST API answers, as pydantic models: each response body is built as its model and
is its schema in /api/v1/openapi.json. Owns the documents of an account (masked contacts, its
payments and plans), an offer, a link, and the small answers of the actions.

Times are written as the ledger's isoformat() ("+00:00", not pydantic's "Z").
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from bot.ledger import models as rows
from bot.payments.service import STATUS_LABELS
from bot.plans import offers
from bot.security import mask_email, mask_phone

Instant = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]
Money = Annotated[str, Field(description="dollars", examples=["208.34"])]
StatusLabel = Literal[tuple(sorted(set(STATUS_LABELS.values())))]  # type: ignore[valid-type]


def dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


class Error(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"description": "every 4xx answer: what to fix, in one sentence"},
    )

    error: str


class Payment(BaseModel):
    reference: str
    amount_cents: int
    amount: str
    scheduled_for: date
    status: StatusLabel
    method: Annotated[str | None, Field(examples=["Visa ending 4242"])]
    channel: str
    plan_id: int | None
    installment_number: int | None
    created_at: Instant


class Installment(BaseModel):
    number: int | None
    reference: str
    scheduled_for: date
    amount_cents: int
    amount: Money
    status: StatusLabel


class Plan(BaseModel):
    id: int
    offer_id: int | None
    status: Literal["active", "completed", "canceled"]
    frequency: str
    total_cents: int
    total: Money
    installment_count: int
    created_at: Instant
    canceled_at: Instant | None
    installments: list[Installment]


class Account(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "description": "contacts are masked: the full phone, email or SSN never leaves the "
            "ledger"
        },
    )

    account_id: str
    first_name: str
    last_name: str
    description: str
    balance_cents: int
    balance: Annotated[str, Field(examples=["1250.00"])]
    phone: Annotated[str | None, Field(examples=["***-***-0100"])]
    email: Annotated[str | None, Field(examples=["m***@example.com"])]
    ssn: Annotated[str | None, Field(examples=["***-**-6789"])]
    timezone: Annotated[
        str | None,
        Field(description="null: not known (quiet hours then hold in every US zone)"),
    ]
    creditor: str | None
    language: Annotated[
        Literal["en", "es"], Field(description="the language of the customer's texts and pages")
    ]
    # Left out of the upsert's answer.
    payments: list[Payment] = Field(default_factory=list)
    plans: list[Plan] = Field(default_factory=list)


class ScheduleDay(BaseModel):
    date: date
    amount: Money
    amount_cents: int


class Offer(BaseModel):
    id: int
    account_id: str
    kind: Literal["plan", "settlement"]
    status: Literal["open", "accepted", "expired", "withdrawn"]
    total_cents: int
    total: Money
    installment_count: int
    frequency: str | None
    schedule: list[ScheduleDay]
    discount_bps: Annotated[int | None, Field(description="2500 = 25 % off")]
    savings: Annotated[str | None, Field(description="a settlement's saving, dollars")]
    rules: dict[str, Any] | None
    expires_at: Instant | None
    created_at: Instant
    created_by: str | None
    sent_at: Instant | None
    accepted_at: Instant | None
    plan_id: Annotated[int | None, Field(description="the plan, once signed")]


class OfferList(BaseModel):
    account_id: str
    offers: list[Offer]


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(json_schema_extra={"format": "uri"})]
    expires_at: Instant
    amount_cents: int | None
    allow_amount_change: bool
    fee_cents: int
    due_on: date | None


class PlanCanceled(BaseModel):
    plan_id: int
    status: Literal["canceled"]
    installments_canceled: int


class HandedBack(BaseModel):
    phone: str
    handled_by: str  # kept for clients written before `status`: always "bot" here
    status: str


ConversationStatus = Literal["waiting", "agent", "bot", "resolved"]


class Conversation(BaseModel):
    phone: str
    account_id: str | None = Field(description="the account's account_id; null: not linked")
    status: ConversationStatus
    reason: str | None = Field(
        description="why it was handed to a person: asked, confused, wrong_number, hardship, "
                    "dispute, opt_out_unclear, agent_opened")
    waiting_since: Instant | None
    assignee: str | None = Field(description="the agent who owns it (status agent)")


class ConversationList(BaseModel):
    conversations: list[Conversation]


class ConversationMessage(BaseModel):
    direction: Literal["in", "out"]
    author: str = Field(description="customer, bot, agent:NAME or system")
    body: str
    at: Instant
    channel: str = Field(description="sms or web")
    status: str | None = Field(
        description="Twilio's delivery status of a text sent (queued, sent, delivered, "
                    "undelivered, failed), replied for a reply in the webhook's answer")


class ConversationDetail(Conversation):
    messages: list[ConversationMessage]


def answer_body(model: BaseModel, **dump: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", **dump)


def account_view(
    account: rows.Account,
    payments: list[tuple[rows.Payment, rows.PaymentMethod | None]],
    account_plans: list[rows.Plan] | None = None,
) -> Account:
    installments: dict[int, list[rows.Payment]] = defaultdict(list)
    for payment, _ in payments:
        if payment.plan_id is not None:
            installments[payment.plan_id].append(payment)
    return Account(
        account_id=account.account_ref,
        first_name=account.first_name,
        last_name=account.last_name,
        description=account.description,
        balance_cents=account.balance_cents,
        balance=dollars(account.balance_cents),
        phone=mask_phone(account.phone),
        email=mask_email(account.email),
        ssn=f"***-**-{account.ssn_last4}" if account.ssn_last4 else None,
        timezone=account.timezone,
        creditor=account.creditor_code,
        language="es" if account.language == "es" else "en",
        payments=[
            Payment(
                reference=p.reference,
                amount_cents=p.amount_cents,
                amount=dollars(p.amount_cents),
                scheduled_for=p.scheduled_for,
                status=STATUS_LABELS.get(p.status, p.status),
                method=m.description if m else None,
                channel=p.channel,
                plan_id=p.plan_id,
                installment_number=p.installment_number,
                created_at=p.created_at,
            )
            for p, m in payments
        ],
        plans=[plan_view(plan, installments[plan.id]) for plan in account_plans or []],
    )


def plan_view(plan: rows.Plan, installments: list[rows.Payment]) -> Plan:
    return Plan(
        id=plan.id,
        offer_id=plan.offer_id,
        status=plan.status,
        frequency=plan.frequency,
        total_cents=plan.total_cents,
        total=dollars(plan.total_cents),
        installment_count=plan.installment_count,
        created_at=plan.created_at,
        canceled_at=plan.canceled_at,
        installments=[
            Installment(
                number=p.installment_number,
                reference=p.reference,
                scheduled_for=p.scheduled_for,
                amount_cents=p.amount_cents,
                amount=dollars(p.amount_cents),
                status=STATUS_LABELS.get(p.status, p.status),
            )
            for p in sorted(installments, key=lambda p: (p.installment_number or 0, p.id))
        ],
    )


def offer_view(
    offer: rows.Offer, account: rows.Account, *, now: datetime, plan_id: int | None = None
) -> Offer:
    return Offer(
        id=offer.id,
        account_id=account.account_ref,
        kind=offer.kind,
        status=offers.offer_status(offer, now),
        total_cents=offer.total_cents,
        total=dollars(offer.total_cents),
        installment_count=offer.installment_count,
        frequency=offer.frequency,
        schedule=[
            ScheduleDay(date=day, amount=dollars(amount), amount_cents=amount)
            for day, amount in offers.offer_schedule(offer)
        ],
        discount_bps=offer.discount_bps,
        savings=dollars(max(0, account.balance_cents - offer.total_cents))
        if offer.kind == "settlement"
        else None,
        rules=offer.rules,
        expires_at=offer.expires_at,
        created_at=offer.created_at,
        created_by=offer.created_by,
        sent_at=offer.sent_at,
        accepted_at=offer.accepted_at,
        plan_id=plan_id,
    )
