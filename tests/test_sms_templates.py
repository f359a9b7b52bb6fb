"""Every SMS template, rendered with realistic (and long) data in English and in Spanish: GSM-7
only, two segments at most."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import pytest

from bot.payments.collectable import Collectable
from bot.payments.service import PaymentOutcome
from bot.plans.changes import DateChange, PlanRules, PlanStatus
from bot.providers.payments import polite_decline_message
from bot.text.gsm7 import is_gsm7, segment_count
from bot.text.rendering import SmsRenderer
from states.payment import MethodView, OfferView
from states.plan_change import PlanOfferView
from states.replies import Reply

BASE = {
    "brand": "Northwind Recovery Services of America",
    "support_contact": "support@northwind-recovery.example or 1-800-555-0199",
    "first_name": "Maximiliana-Josefina",
    "disclosure": "This is a communication from a debt collector.",
    "link_url": "https://pay.northwind-recovery.example/p/AbCdEfGhIjKlMnOpQrStUvWx",
    "method_words": "card or bank account",  # the longest: a creditor that takes both
}
OFFERS = [
    OfferView(1, "settlement", 1_234_567_89, 1, 1_234_567_89, None, date(2026, 12, 31), 98_765_43),
    OfferView(2, "plan", 9_999_999_99, 12, 833_333_34, "biweekly", None, 0),
    OfferView(3, "plan", 9_999_999_99, 24, 416_666_67, "monthly", None, 0),
]
METHODS = [
    MethodView(1, "card", "American Express", "0005"),
    MethodView(2, "card", "Mastercard", "4444"),
    MethodView(3, "us_bank_account", "Bank", "6789"),
]
BIG = 9_999_999_99
SUMMARY = {
    "amount_cents": BIG,
    "method_label": "American Express ending 0005",
    "pay_on": date(2027, 2, 23),
    "offer": OFFERS[1],
    "fee_cents": 0,
    "method_kind": "card",
}
OUTCOME = {
    "amount_cents": BIG,
    "method_label": "American Express ending 0005",
    "reference": "P-ZZZZZ",
    "masked_email": "m***@northwind-recovery.example",
    "pay_on": date(2027, 2, 23),
    "installments": 24,
    "failure_message": "The bank reported insufficient funds.",
}

PLAN_OFFER = PlanOfferView(
    id=1,
    installment_count=24,
    first_cents=416_666_67,
    last_cents=416_666_59,
    total_cents=BIG,
    first_due=date(2027, 12, 15),
    frequency="biweekly",
    expires_on=date(2027, 12, 31),
)
PLAN = PlanStatus(
    plan_id=1,
    frequency="biweekly",
    today=date(2026, 11, 25),
    rules=PlanRules(
        skips_allowed=1, move_max_days=14, min_payment_cents=2500, furthest_schedule_days=90
    ),
    skips_used=0,
    paid_cents=BIG,
    remaining_cents=BIG,
    remaining_count=24,
    method_label="American Express ending 0005",
    next_payment_id=1,
    next_due=date(2027, 12, 15),
    next_amount_cents=416_666_67,
    original_due=date(2027, 12, 15),
    following_due=date(2027, 12, 29),
    last_due=date(2028, 11, 15),
)
CHANGE = DateChange("P-ZZZZZ", 416_666_67, date(2027, 12, 15), date(2028, 12, 15))
EXTRA = {
    "outcome": PaymentOutcome("P-ZZZZZ", "paid", BIG, "American Express ending 0005", None),
    "left_cents": BIG,
    "masked_email": "m***@northwind-recovery.example",
}
OUTREACH = {
    "first_name": "Maximiliana-Josefina",
    "offer_kind": "plan",
    "total_cents": BIG,
    "installment_count": 24,
    "installment_cents": 416_666_67,
    "odd_cents": 416_666_59,
    "odd_position": "the last",
    "first_on": date(2027, 12, 15),
    "expires_on": date(2027, 12, 31),
    "days_left": 3,
    "sms_signing": True,
    "compact": True,
}

WAITS = [
    {"wait": {"open": True, "minutes": 1440, "back": ""}},
    {"wait": {"open": False, "minutes": 15, "back": "Wednesday at 12:00 PM AKST",
              "opens": datetime(2026, 12, 2, 12, 0, tzinfo=ZoneInfo("America/Anchorage")),
              "today": date(2026, 11, 28)}},
]

CONTEXTS: dict[str, list[dict]] = {
    "greeting": [{"balance_cents": BIG, "description": "Acme Platinum Rewards Card ending 4821"}],
    "idle_menu": [{"balance_cents": BIG, "description": "Acme Platinum Rewards Card ending 4821"}],
    "nothing_owed": [{}],
    "idle_paid": [{"description": "Acme Card ending 4821"}],
    "contact_review": [{"masked_email": "m***@northwind-recovery.example"}, {"masked_email": None}],
    "ask_email": [{}],
    "email_updated": [{"email": "maximiliana.josefina.lopez-garcia@northwind-recovery.example"}],
    "offers": [{"offers": OFFERS, "skip_option": 4}, {"offers": OFFERS[:2], "skip_option": None}],
    "ask_amount": [
        {"min_cents": 2500, "max_cents": BIG, "open_reason": None},
        {
            "min_cents": 2500,
            "max_cents": BIG,
            "open_reason": "You owe $999,999.99 after your scheduled and pending payments.",
        },
    ],
    "amount_too_high": [{"max_cents": BIG, "reduced": False}, {"max_cents": BIG, "reduced": True}],
    "nothing_open": [
        {
            "balance_cents": BIG,
            "description": "Acme Platinum Rewards Card ending 4821",
            "reason": "You owe $0.00 after your scheduled and pending payments, so nothing "
            "more is due.",
            "has_plan": True,
        },
        {
            "balance_cents": BIG,
            "description": "Acme Platinum Rewards Card ending 4821",
            "reason": "Your settlement payment is on its way and settles this account, so "
            "nothing more is due.",
            "has_plan": False,
        },
    ],
    "preset_lowered": [
        {
            "preset_cents": BIG,
            "amount_cents": BIG - 1,
            "reason": "You owe $999,999.98 after your scheduled and pending payments.",
        }
    ],
    "not_open": [
        {
            "reason": "You owe $999,999.99 after your scheduled and pending payments.",
            "open_cents": BIG,
        },
        {"reason": "You owe $0.00 after your scheduled and pending payments.", "open_cents": 0},
    ],
    "amount_too_low": [{"min_cents": 2500}],
    "choose_method": [{"methods": METHODS}, {"methods": METHODS[:1]}],
    "add_method": [{}],
    "awaiting_method": [{"methods": METHODS}, {"methods": []}],
    "ask_date": [{"horizon": date(2027, 2, 23)}],
    "confirm": [
        SUMMARY,
        {**SUMMARY, "offer": OFFERS[0], "pay_on": None},
        {**SUMMARY, "offer": None},
        {**SUMMARY, "offer": None, "fee_cents": 99_99},
    ],
    "agreement": [{**SUMMARY, "terms_url": "https://pay.northwind-recovery.example/t/2026-11"}],
    "agreement_declined": [{}],
    "payment_paid": [OUTCOME],
    "payment_scheduled": [OUTCOME],
    "payment_pending": [OUTCOME],
    "payment_declined": [OUTCOME] + [
        {**OUTCOME, "failure_message": polite_decline_message(code)}
        for code in ("insufficient_funds", "authentication_required", "processing_error", None)
    ],
    "payment_unconfirmed": [OUTCOME],
    "payment_processing": [OUTCOME],
    "payment_refused": [{"reason": "That payment method is no longer on file."}],
    "opt_out_confirmed": [{}],
    "opt_in_confirmed": [{}],
    "help": [{}],
    "hello": [{}],
    # A handoff's replies (bot/sms/handover.py): agents in now, or back later (the longest day)
    "agent_requested": WAITS,
    "agent_review": WAITS,
    "too_many_tries": WAITS,
    "hardship": [{**w, "plan_offer": p} for w in WAITS for p in (True, False)],
    "dispute": WAITS,
    "wrong_number": [{}],
    "agent_queue": WAITS,
    "agent_timed_out": [{}],
    "agent_has_it": [{**w, "agent": "Maximiliana-Josefina Lopez-Garcia de la Cruz y Montoya"}
                     for w in WAITS],
    "balance": [
        {
            "balance_cents": BIG,
            "description": "Acme Platinum Rewards Card ending 4821",
            "reason": reason,
            "next_payment": None,
            "declined": None,
        }
        for reason in (
            "",
            Collectable(BIG, BIG, settling=True).explanation(),
            Collectable(BIG, BIG, settling=False).explanation(),
            Collectable(BIG, 1, settling=False).explanation(),
        )
    ] + [
        # The worst case: what is on its way, the next payment and declined installments.
        {
            "balance_cents": BIG,
            "description": "Acme Platinum Rewards Card ending 4821",
            "reason": Collectable(BIG, 1, settling=False).explanation(),
            "next_payment": {"amount_cents": BIG, "day": date(2027, 12, 15)},
            "declined": {"count": count, "cents": BIG, "day": date(2027, 12, 1)},
        }
        for count in (1, 12)
    ],
    "link": [{"link_hours": 72}],
    "did_not_understand": [
        {"reason": r}
        for r in (
            None,
            "past_date",
            "beyond_horizon",
            "ambiguous",
            "too_many_decimals",
            "not_positive",
            "too_large",
            "bad_email",
            "no_such_option",
            "not_understood",
            "wrong_code",
            "code_tries_used",
        )
    ],
    "timed_out": [{}],
    # A turn that failed (bot/sms/recovery.py): never "try again", BALANCE first
    "turn_failed": [{}],
    "ask_account_id": [{}],
    "ask_code": [{"tries_left": 3}],
    "verification_failed": [
        {"tries_left": t, "wait_minutes": w} for t in (2, 1, 0) for w in (None, 1, 60)
    ],
    "verification_wait": [{"minutes": 1}, {"minutes": 60}],
    "code_limit_reached": [{}],
    "too_many_lookups": [{}],
    "verified": [{}],
    "verification_code": [{"code": "123456"}],
    "contact_code": [{"code": "123456"}],
    "contact_changed": [
        {"what": "email address", "masked_old": "m***@northwind-recovery.example",
         "masked_new": "x***@northwind-recovery.example"},
        {"what": "mobile number", "masked_old": "***-***-0100", "masked_new": "***-***-0177"},
    ],
    "contact_code_sent": [
        {"sent": ["m***@northwind-recovery.example"], "failed": [], "capped": False,
         "masked_email": "m***@northwind-recovery.example"},
        {"sent": ["m***@northwind-recovery.example", "***-***-0177"], "failed": [],
         "capped": False, "masked_email": None},
        {"sent": [], "failed": ["m***@northwind-recovery.example"], "capped": False,
         "masked_email": None},
        {"sent": [], "failed": ["m***@northwind-recovery.example"], "capped": True,
         "masked_email": None},
    ],
    "contact_needs_code": [{}],
    "method_saved": [{"label": "Bank account", "last4": "6789"}],
    "paypal_saved": [{"masked": "m***@northwind-recovery.example"}],
    # Plans by text (states/plan_change.py)
    "plan_offer": [{"offer": PLAN_OFFER, "method_label": "American Express ending 0005"}],
    "plan_signed": [
        {
            "offer": PLAN_OFFER,
            "method_label": "American Express ending 0005",
            "reference": "P-ZZZZZ",
            "masked_email": "m***@northwind-recovery.example",
        }
    ],
    "plan_status": [
        {"plan": PLAN},
        {"plan": PlanStatus(1, "monthly", date(2026, 11, 25), PLAN.rules, 0, BIG, 0, 0)},
        # Declined installments are news of their own, beside what was paid.
        {"plan": dataclasses.replace(PLAN, paid_cents=0, declined_count=1,
                                     declined_cents=BIG, last_declined_on=date(2027, 12, 1))},
        {"plan": dataclasses.replace(PLAN, declined_count=12, declined_cents=BIG,
                                     last_declined_on=date(2027, 12, 1))},
    ],
    "language_set": [{}],
    "language_offer": [{}],
    "plan_none": [{}],
    "plan_request_agent": [{}],
    "nothing_to_agree": [{"has_plan": True}, {"has_plan": False}],
    "date_not_offered": [
        {"reason": "settlement", "day": date(2027, 2, 23)},
        {"reason": "off", "day": date(2027, 2, 23)},
        {"reason": "knowledge", "day": date(2027, 2, 23)},
    ],
    "who_we_are": [
        {"disclosure": ""},
        {"disclosure": "This communication is from Northwind Recovery Services of America, a "
                       "debt collector, in an attempt to collect a debt."},
    ],
    "plan_sign_on_web": [{}],
    "plan_add_method": [{"offer": PLAN_OFFER}],
    "plan_offer_expired": [{"offer": PLAN_OFFER}],
    "plan_offer_closed": [{"status": s} for s in ("accepted", "expired", "withdrawn")],
    "plan_offer_declined": [{}],
    "plan_ask_date": [{"next_due": date(2027, 12, 15), "latest": date(2027, 12, 28)}],
    "plan_confirm_move": [
        {"amount_cents": BIG, "old_date": date(2027, 12, 15), "new_date": date(2027, 12, 28)}
    ],
    "plan_confirm_skip": [
        {"amount_cents": BIG, "old_date": date(2027, 12, 15), "new_date": date(2028, 12, 28)}
    ],
    "plan_ask_extra": [{"min_cents": 2500, "max_cents": BIG}],
    "plan_confirm_extra": [
        {"amount_cents": BIG, "method_label": "American Express ending 0005", "left_cents": BIG}
    ],
    "plan_moved": [{"change": CHANGE}],
    "plan_skipped": [{"change": CHANGE}],
    "plan_extra_paid": [
        EXTRA,
        {**EXTRA, "left_cents": 0},
        {**EXTRA, "outcome": PaymentOutcome("P-ZZZZZ", "pending", BIG, "Bank ending 6789", None)},
        {
            **EXTRA,
            "outcome": PaymentOutcome(
                "P-ZZZZZ", "processing", BIG, "Bank ending 6789", None, "We could not reach."
            ),
        },
    ],
    "plan_change_canceled": [{}],
    "plan_change_refused": [
        {
            "reason": "Your plan lets you move a payment up to 14 days; the latest date is "
            "Dec 29, 2026."
        },
        {"reason": "The new date must be before your following payment on Dec 29, 2027."},
        {"reason": "You can skip one payment on this plan and already did."},
        {"reason": "That is more than is left on your plan ($9,999,999.99)."},
    ],
    # Proactive offers (bot/outreach/queue.py composes them, shortening long names first)
    "offer": [OUTREACH, {**OUTREACH, "offer_kind": "settlement"}],
    "reminder": [OUTREACH, {**OUTREACH, "offer_kind": "settlement"}],
    "offer_expired": [OUTREACH],
    # A supervisor canceled a scheduled payment (bot/payments/cancellation.py), through the queue
    "payment_canceled": [{"reference": "P-ZZZZZ", "amount_cents": BIG,
                          "scheduled_for": date(2027, 12, 15)}],
}
# The first message of a campaign may run longer, for the debt-collector disclosure.
LONGER_ALLOWED = {"greeting", "offer", "reminder", "offer_expired", "payment_canceled"}


def template_names() -> set[str]:
    folder = resources.files("bot") / "templates" / "sms"
    return {p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt")}


def test_every_template_is_covered() -> None:
    assert template_names() == set(CONTEXTS)


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_template_is_gsm7_and_short(name: str, language: str) -> None:
    renderer = SmsRenderer()
    for context in CONTEXTS[name]:
        text = renderer.render(Reply(name, context), BASE, language)
        assert text.strip(), name
        assert "  " not in text, text
        assert is_gsm7(text), text
        limit = 3 if name in LONGER_ALLOWED else 2
        assert segment_count(text) <= limit, (len(text), text)


def test_when_agents_are_back_reads_in_each_language() -> None:
    renderer = SmsRenderer()
    reply = Reply("agent_queue", WAITS[1])
    assert renderer.render(reply, BASE, "en") == (
        "You are still in line for a member of our team, who will text you back here when our "
        "team is back, Wednesday at 12:00 PM AKST. Reply MENU to use the automated assistant "
        "meanwhile."
    )
    assert renderer.render(reply, BASE, "es") == (
        "Sigue en espera de un miembro de nuestro equipo, que le escribira aqui cuando el equipo "
        "regrese, el miércoles a las 12:00 PM AKST. Mientras tanto, responda MENU para usar el "
        "asistente automatico."
    )


def test_plan_status_tells_of_a_declined_installment_in_each_language() -> None:
    renderer = SmsRenderer()
    declined = dataclasses.replace(
        PLAN, paid_cents=0, remaining_cents=104_170, remaining_count=5, next_amount_cents=20_834,
        next_due=date(2026, 12, 15), declined_count=1, declined_cents=20_834,
        last_declined_on=date(2026, 12, 1),
    )
    reply = Reply("plan_status", {"plan": declined})
    assert renderer.render(reply, BASE, "en") == (
        "Your plan: next payment $208.34, Pending (scheduled for Dec 15). Paid so far $0.00; "
        "$1,041.70 left in 5 payments. 1 payment of $208.34 was declined on Dec 1. Reply MOVE to "
        "change the next date, SKIP to skip it, EXTRA to pay more now."
    )
    assert renderer.render(reply, BASE, "es") == (
        "Su plan: proximo pago $208.34, Pendiente (programado para el 15 dic). Pagado: $0.00; "
        "quedan $1,041.70 en 5 pagos. 1 pago de $208.34 fue rechazado el 1 dic. Responda MOVER "
        "para cambiar la fecha, SALTAR para saltar el pago, EXTRA para pagar mas ahora."
    )


def test_a_decline_reads_whole_in_each_language() -> None:
    renderer = SmsRenderer()
    reply = Reply("payment_declined", {
        "amount_cents": 5000, "method_label": "Visa ending 4242",
        "failure_message": polite_decline_message("card_declined", "insufficient_funds"),
    })
    assert renderer.render(reply, BASE, "en") == (
        "Sorry, $50.00 with Visa ending 4242 did not go through: The payment was declined for "
        "insufficient funds. Please try another card or bank account. Nothing was charged."
    )
    assert renderer.render(reply, BASE, "es") == (
        "Disculpe, el pago de $50.00 con Visa terminada en 4242 no se realizo: El pago fue "
        "rechazado por fondos insuficientes. Por favor use otra tarjeta o cuenta bancaria. No se "
        "cobro nada."
    )
