"""What a creditor's settings produce, for the supervisor's edit form: the first text a customer
gets (the campaign's own composer, ``bot.outreach.campaigns.compose_first_message``) and the
steps of the payment journey, walked by the flow's own machine (``states/payment.py``) with a
sample customer, each step's SMS rendered by the engine's renderer and titled as its web page.

Nothing here is hand-written customer text: change a template or a transition and the preview
follows. The sample customer is made up (Maria, $1,250.00, one card, a settlement and a plan
offer) so no real customer's data is shown in a preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bot.config.flow import FlowSettings
from bot.config.settings import Settings
from bot.ledger.models import Account, Creditor
from bot.outreach.campaigns import compose_first_message
from bot.sms.parsing import Meaning
from bot.text.gsm7 import segment_count
from bot.text.rendering import SmsRenderer
from portal_fallback.flow_pages import STEP_TITLES
from states import payment
from states.payment import AccountView, MethodView, OfferView, PaymentFlow

SAMPLE_BALANCE = 125000
SAMPLE_AMOUNT = 5000
SAMPLE_LINK = "/p/EXAMPLE"  # never a real token: the preview mints no link
_MACHINE = payment.build_machine()
_RENDERER = SmsRenderer()


@dataclass(frozen=True)
class Step:
    state: str
    title: str  # the web page's title for this step
    sms: str  # what the bot texts at this step


@dataclass(frozen=True)
class Walk:
    title: str  # "Pays an amount of their own", ...
    steps: list[Step]
    note: str = ""  # why the walk stops short, when it does


@dataclass(frozen=True)
class Preview:
    first_sms: str
    first_sms_segments: int
    walks: list[Walk]
    switches: dict[str, bool]  # the four journey switches, as the walks read them


def sample_account(today: date, terms_url: str) -> AccountView:
    return AccountView(
        first_name="Maria", description="Acme Card ending 4821", balance_cents=SAMPLE_BALANCE,
        masked_email="m***@example.com",
        offers=(
            OfferView(id=1, kind="settlement", total_cents=80000, installment_count=1,
                      installment_cents=80000, frequency=None,
                      expires_on=today + timedelta(days=14), savings_cents=45000),
            OfferView(id=2, kind="plan", total_cents=SAMPLE_BALANCE, installment_count=6,
                      installment_cents=20834, frequency="monthly", expires_on=None,
                      savings_cents=0),
        ),
        methods=(MethodView(id=1, kind="card", brand="Visa", last4="4242"),),
        today=today, terms_url=terms_url,
    )


def build(settings: Settings, creditor: Creditor, flow: FlowSettings, today: date) -> Preview:
    """The preview of ``creditor`` (saved or as proposed, not yet stored) running ``flow``."""
    link = settings.public_base_url + SAMPLE_LINK
    sample = Account(first_name="Maria", last_name="Lopez", balance_cents=SAMPLE_BALANCE,
                     description="Acme Card ending 4821")
    first = compose_first_message(_RENDERER, account=sample, settings=settings,
                                  creditor=creditor, link_url=link)
    base = {
        "brand": creditor.name or settings.brand, "support_contact": settings.support_contact,
        "first_name": "Maria", "disclosure": "", "method_words": flow.method_words,
        "link_url": link,
    }
    account = sample_account(today, settings.public_base_url + "/t/EXAMPLE")
    walks = [walk("Pays an amount of their own", flow, account, base, take_offer=None)]
    if flow.virtual_collection:
        walks.append(walk("Takes the settlement offer", flow, account, base, take_offer=1))
        walks.append(walk("Takes the payment plan offer", flow, account, base, take_offer=2))
    switches = {key: bool(getattr(flow, key)) for key in
                ("contact_review", "virtual_collection", "allow_skip_offer", "schedule_payment")}
    return Preview(first, segment_count(first), walks, switches)


# The sample customer's answer at each step (what a person would text).
def _answer(state: str, today: date) -> Meaning | None:
    if state == "contact_review":
        return Meaning("yes")
    if state == "amount":
        return Meaning("amount", SAMPLE_AMOUNT)
    if state == "method":
        return Meaning("choice", 1)
    if state == "schedule":
        return Meaning("date", today + timedelta(days=10))
    if state == "confirm":
        return Meaning("yes")
    return None


def walk(title: str, flow: FlowSettings, account: AccountView, base: dict[str, Any], *,
         take_offer: int | None) -> Walk:
    model = PaymentFlow(account=account, settings=flow)
    _MACHINE.add_model(model, initial="idle")
    steps: list[Step] = []
    note = ""
    try:
        model.begin()
        for _ in range(len(payment.STATES) + 2):  # a walk visits each step once at most
            state = model.state
            said = [_RENDERER.render(reply, base) for reply in model.replies]
            model.replies = []
            steps.append(Step(state, STEP_TITLES.get(state, state), "\n".join(said)))
            if state in ("agreement", "idle"):
                break
            if state == "offers":
                choice = take_offer if take_offer is not None else model.skip_option()
                if choice is None:
                    note = ("Skipping the offers is off: the customer must take one of them "
                            "to go on.")
                    break
                meaning: Meaning | None = Meaning("choice", choice)
            else:
                meaning = _answer(state, account.today)
            if meaning is None or not model.answer(meaning):
                break
    finally:
        _MACHINE.remove_model(model)
    return Walk(title, steps, note)
