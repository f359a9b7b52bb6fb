"""What must hold at the end of the chaos run, whatever died meanwhile: each check says how many
things it examined and lists every violation in words a person can act on.

Checked after the harness stopped the faults, let the workers drain and relayed every Stripe
event: charges against the ledger (by idempotency key), what each account owes, every inbound
MessageSid, every email owed, every installment that fell due.

Imports bot.ledger (reads only), bot.payments.collectable and bot.worker's config and rules (the
ledger's own definitions), aiohttp (localstripe's list) and bench.chaos.stage."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from sqlalchemy import select

from bench.chaos.stage import STRIPE_KEY, ChargeRecord, Stage
from bot.ledger.db import Database
from bot.ledger.models import Account, Message, Offer, OutboundEmail, Outreach, Payment
from bot.payments.collectable import COMMITTED
from bot.worker.config import WorkerConfig
from bot.worker.rules import local_today

if TYPE_CHECKING:
    from bench.chaos.customers import LoadStats, MessageRecord

CHARGED = ("succeeded", "processing")  # an intent that took (or is taking) the money
LEDGER_CHARGED = ("paid", "pending")
# An installment that fell due ends in one of these once the workers have drained.
INSTALLMENT_DONE = ("paid", "pending", "declined", "canceled")
RECOVERY_DELAY = WorkerConfig().recovery_delay


@dataclass
class Check:
    name: str
    examined: int = 0
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth knowing, not a violation

    @property
    def ok(self) -> bool:
        return not self.violations


@dataclass
class Sent:
    """A mail SendGrid accepted: its id and where it went."""

    message_id: str
    to: str
    subject: str


async def check(stage: Stage, stats: LoadStats) -> list[Check]:
    database = Database(stage.database_url)
    try:
        async with database.session() as session:
            payments = list(await session.scalars(select(Payment)))
            accounts = {a.id: a for a in await session.scalars(select(Account))}
            inbound = list(await session.execute(
                select(Message.id, Message.provider_sid).where(Message.direction == "inbound")))
            replied = set(await session.scalars(
                select(Message.in_reply_to_id).where(Message.in_reply_to_id.is_not(None))))
            emails = list(await session.scalars(select(OutboundEmail)))
            settlements = set(await session.scalars(
                select(Offer.id).where(Offer.kind == "settlement")))
            copies = list(await session.scalars(
                select(Outreach).where(Outreach.kind == "agreement_copy")))
    finally:
        await database.close()
    intents = await localstripe_intents(stage.localstripe_url)
    now = datetime.now(UTC)
    return [
        charges_match_ledger(stage.charges, intents, payments),
        nothing_collected_beyond_balance(payments, accounts, stats.owed, settlements),
        messages_stored_once(stats, inbound, replied),
        emails_sent_once(emails, copies, sendgrid_sent(stage), payments, accounts),
        installments_settled(payments, accounts, now, stage.charges),
    ]


async def localstripe_intents(url: str) -> list[dict[str, Any]] | None:
    """Every PaymentIntent localstripe holds, where it lists them (None where it cannot)."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    try:
        async with aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {STRIPE_KEY}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as http:
            for _ in range(1000):
                params = {"limit": "100", **({"starting_after": after} if after else {})}
                async with http.get(f"{url}/v1/payment_intents", params=params) as response:
                    if response.status != 200:
                        return None
                    page = await response.json()
                found += page.get("data", [])
                if not page.get("has_more") or not page.get("data"):
                    return found
                after = page["data"][-1]["id"]
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return found


def sendgrid_sent(stage: Stage) -> list[Sent]:
    sent = []
    for request in stage.sendgrid.requests:
        if request.status != 202 or not request.message_id or not isinstance(request.body, dict):
            continue
        to = ",".join(
            str(to.get("email", "")) for p in request.body.get("personalizations", [])
            for to in p.get("to", [])
        )
        subject = str(request.body.get("subject") or "")
        for p in request.body.get("personalizations", []):
            subject = str(p.get("subject") or subject)
        sent.append(Sent(request.message_id, to.lower(), subject))
    return sent


def charges_match_ledger(
    charges: list[ChargeRecord], intents: list[dict[str, Any]] | None, payments: list[Payment]
) -> Check:
    """Every intent that took money matches exactly one Paid or Pending payment with the same
    idempotency key; no two intents of one key took money; no Paid card payment lacks its
    charge."""
    result = Check("charges match the ledger")
    by_key = {p.idempotency_key: p for p in payments}
    by_reference = {p.reference: p for p in payments}
    # Each intent's key and amount, as the proxy saw it created; its status, the last word.
    keys: dict[str, str] = {}
    amounts: dict[str, int] = {}
    statuses: dict[str, str] = {}
    for charge in charges:
        keys[charge.intent_id] = charge.idempotency_key
        amounts[charge.intent_id] = charge.amount_cents
        statuses[charge.intent_id] = charge.status
    if intents is not None:
        # localstripe's own list: what it holds now. An intent the proxy never recorded (its
        # caller cut off mid-request, the proxy's handler with it) is named by the reference
        # PayBot puts in its metadata.
        for intent in intents:
            intent_id, status = intent["id"], str(intent.get("status"))
            statuses[intent_id] = status
            amounts.setdefault(intent_id, int(intent.get("amount") or 0))
            if intent_id in keys:
                continue
            reference = (intent.get("metadata") or {}).get("paybot_reference")
            payment = by_reference.get(reference or "")
            if payment is not None:
                keys[intent_id] = payment.idempotency_key
                if status in CHARGED:  # (a decline's 402 names no intent the proxy could keep)
                    result.notes.append(f"intent {intent_id} ({status}) not seen by the proxy; "
                                        f"found by its reference {reference}")
            elif status in CHARGED:
                result.violations.append(
                    f"intent {intent_id} ({status}, {intent.get('amount')}c) took money and "
                    f"names no ledger payment (reference {reference!r})")
    else:
        result.notes.append("localstripe does not list PaymentIntents: the proxy's records only")
    taken: dict[str, list[str]] = defaultdict(list)
    for intent_id, key in keys.items():
        result.examined += 1
        if statuses.get(intent_id) in CHARGED:
            taken[key].append(intent_id)
    for key, intent_ids in sorted(taken.items()):
        if len(intent_ids) > 1:
            result.violations.append(
                f"key {key}: {len(intent_ids)} intents took money ({', '.join(intent_ids)})")
        payment = by_key.get(key)
        if payment is None:
            result.violations.append(
                f"key {key}: intent {intent_ids[0]} took money but no ledger payment has the key")
            continue
        if payment.status not in LEDGER_CHARGED:
            result.violations.append(
                f"key {key}: intent {intent_ids[0]} took money but payment {payment.reference} "
                f"is {payment.status}")
        charged = amounts[intent_ids[0]]
        if charged != payment.amount_cents + payment.fee_cents:
            result.violations.append(
                f"key {key}: charged {charged}c, payment {payment.reference} records "
                f"{payment.amount_cents}c + {payment.fee_cents}c fee")
    for payment in payments:
        if payment.status in LEDGER_CHARGED and payment.processor_id and \
                payment.processor_id.startswith("pi_"):
            result.examined += 1
            if payment.idempotency_key not in taken:
                result.violations.append(
                    f"payment {payment.reference} is {payment.status} "
                    f"({payment.processor_id}) but no charge of key {payment.idempotency_key} "
                    "took money")
        elif payment.status in LEDGER_CHARGED and payment.method_id is not None \
                and not payment.processor_id:
            result.examined += 1
            result.violations.append(
                f"payment {payment.reference} is {payment.status} with no processor id")
    return result


def nothing_collected_beyond_balance(
    payments: list[Payment], accounts: dict[int, Account], owed: dict[str, int],
    settlements: set[int],
) -> Check:
    """The ledger's own rule (bot/payments/collectable.py): what is Pending, Processing or
    Scheduled never exceeds the balance, which has the Paid taken off. Where the seed's figure is
    known (`owed`, by account id): Paid + Pending + Processing + Scheduled never exceeds it, and
    the balance is what was owed less what was paid (0 once a settlement is paid)."""
    result = Check("nothing collected beyond the balance")
    committed: Counter[int] = Counter()
    paid: Counter[int] = Counter()
    settled: set[int] = set()
    for payment in payments:
        if payment.status in COMMITTED:
            committed[payment.account_id] += payment.amount_cents
        elif payment.status == "paid":
            paid[payment.account_id] += payment.amount_cents - payment.refunded_cents
            if payment.offer_id in settlements and payment.plan_id is None:
                settled.add(payment.account_id)
    for account_id, account in sorted(accounts.items()):
        result.examined += 1
        name = f"account {account.account_ref}"
        if account.balance_cents < 0:
            result.violations.append(f"{name}: balance {account.balance_cents}c is negative")
        if committed[account_id] > account.balance_cents:
            result.violations.append(
                f"{name}: {committed[account_id]}c pending, processing or scheduled beyond its "
                f"balance of {account.balance_cents}c")
        if account.account_ref not in owed:
            continue
        first = owed[account.account_ref]
        if paid[account_id] + committed[account_id] > first:
            result.violations.append(
                f"{name}: {paid[account_id]}c paid and {committed[account_id]}c pending, "
                f"processing or scheduled beyond the {first}c it owed")
        expected = 0 if account_id in settled else first - paid[account_id]
        if account.balance_cents != expected:
            result.violations.append(
                f"{name}: balance {account.balance_cents}c, but it owed {first}c and paid "
                f"{paid[account_id]}c{' (settled)' if account_id in settled else ''}")
    return result


def messages_stored_once(
    stats: LoadStats, inbound: list[tuple[int, str | None]], replied: set[int]
) -> Check:
    """Every MessageSid the customers sent is stored once; it has its reply stored, or every
    attempt that got a 200 read the same texts."""
    result = Check("inbound messages stored once, answered the same")
    stored: dict[str, list[int]] = defaultdict(list)
    for message_id, sid in inbound:
        if sid:
            stored[sid].append(message_id)
    for record in stats.records:
        result.examined += 1
        ids = stored.get(record.sid, [])
        answered = [a.texts for a in record.attempts if a.status == 200]
        if len(ids) > 1:
            result.violations.append(f"{record.sid} ({record.body!r}) stored {len(ids)} times")
        if not ids:
            if answered:
                result.violations.append(
                    f"{record.sid} ({record.body!r}) was answered but never stored")
            else:
                result.notes.append(f"{record.sid}: never reached a process that stored it")
            continue
        if any(message_id in replied for message_id in ids):
            continue
        if len(answered) > 1 and any(texts != answered[0] for texts in answered[1:]):
            shown = " / ".join(repr(" ".join(t or [])[:80]) for t in answered)
            result.violations.append(
                f"{record.sid} ({record.body!r}) has no stored reply and its retries were "
                f"answered differently: {shown}")
        elif len(answered) >= 1 and answered[0] == [] and len(record.attempts) > 1:
            result.violations.append(
                f"{record.sid} ({record.body!r}) has no stored reply and a retry got an empty "
                f"answer ({attempts_of(record)})")
    return result


def attempts_of(record: MessageRecord) -> str:
    """Each attempt as Twilio saw it: "timeout after 15.0s, 200 in 0.2s: []"."""
    return ", ".join(
        f"{a.error or a.status} after {a.seconds:.1f}s"
        + (f": {[t[:40] for t in a.texts]}" if a.texts is not None else "")
        for a in record.attempts)


def emails_sent_once(
    emails: list[OutboundEmail], copies: list[Outreach], sent: list[Sent],
    payments: list[Payment], accounts: dict[int, Account],
) -> Check:
    """Every email the ledger owes left once: each Paid payment has one receipt (its subject
    names the payment's reference); each mail SendGrid accepted is one ledger row's (by
    SendGrid's message id, or, for a row cut off during the send, by address and subject);
    each row the ledger shows sent has its mail."""
    result = Check("every receipt and notice sent exactly once")
    receipts = Counter(
        word for row in emails if row.kind == "receipt" and "scheduled for" not in row.subject
        for word in row.subject.split())
    for payment in payments:
        account = accounts.get(payment.account_id)
        if payment.status != "paid" or account is None or not account.email:
            continue
        result.examined += 1
        count = receipts[payment.reference]
        if count != 1:
            result.violations.append(
                f"payment {payment.reference} is paid and has {count} receipts (one is owed)")
    accepted = Counter(s.message_id for s in sent)
    recorded: dict[str, str] = {}
    for row in emails:
        result.examined += 1
        name = f"email {row.id} ({row.kind} to {row.to_address})"
        if row.status == "sent":
            if not row.provider_message_id or accepted[row.provider_message_id] == 0:
                result.violations.append(f"{name} is marked sent but SendGrid never took it")
            else:
                recorded[row.provider_message_id] = name
        elif row.status == "failed":
            result.violations.append(f"{name} is failed: owed and not sent")
        elif row.status in ("queued", "sending"):
            result.notes.append(f"{name} still {row.status} (next try {row.not_before})")
    for copy in copies:
        result.examined += 1
        name = f"agreement copy {copy.id} (plan {copy.plan_id})"
        message_id = (copy.detail or {}).get("message_id")
        if copy.status == "sent":
            if not message_id or accepted[message_id] == 0:
                result.violations.append(f"{name} is marked sent but SendGrid never took it")
            else:
                recorded[message_id] = name
        elif copy.status in ("failed",):
            result.violations.append(f"{name} is {copy.status}: owed and not known to be sent")
        elif copy.status in ("held", "sending"):
            result.notes.append(f"{name} still {copy.status}")
    cut_off = Counter(
        (row.to_address.lower(), row.subject) for row in emails
        if row.status in ("sending", "unknown"))
    # An agreement copy cut off during its send: one mail to the account's address may be it.
    copies_cut_off = Counter(
        (accounts[c.account_id].email or "").lower() for c in copies
        if c.status == "sending" and c.account_id in accounts)
    for mail in sent:
        if mail.message_id in recorded:
            continue
        if cut_off[(mail.to, mail.subject)] > 0:  # sent once; the process died before writing
            cut_off[(mail.to, mail.subject)] -= 1
            result.notes.append(f"a mail to {mail.to} ({mail.subject!r}) left once; its row was "
                                "cut off mid-send, so the ledger marks it unknown")
            continue
        if copies_cut_off[mail.to] > 0 and "agreement" in mail.subject.lower():
            copies_cut_off[mail.to] -= 1
            continue
        result.violations.append(
            f"SendGrid took a mail no ledger row records ({mail.message_id} to {mail.to}: "
            f"{mail.subject!r}): sent twice, or sent unowed")
    # A row cut off mid-send that SendGrid never took: owed, and lost (the ledger, not knowing
    # whether it left, never sends it again: at most one copy).
    for (to, subject), left in cut_off.items():
        if left > 0:
            result.violations.append(
                f"{left} email(s) to {to} ({subject!r}) cut off mid-send before SendGrid took "
                "them: owed and not sent")
    return result


def installments_settled(
    payments: list[Payment], accounts: dict[int, Account], now: datetime,
    charges: list[ChargeRecord],
) -> Check:
    """Every installment that fell due (by the customer's own date) is Paid or Pending once, or
    Declined, or Canceled. One left Processing with no charge made for its key, by a worker that
    died between its claim and the processor, waits for the worker's recovery delay by design:
    a note while that delay runs, a violation after."""
    result = Check("installments due are charged once, declined or canceled")
    sent_keys = {c.idempotency_key for c in charges}
    for payment in payments:
        if payment.plan_id is None:
            continue
        account = accounts.get(payment.account_id)
        if payment.scheduled_for > local_today(now, account.timezone if account else None):
            continue
        result.examined += 1
        if (payment.status == "processing" and payment.idempotency_key not in sent_keys
                and now - payment.updated_at < RECOVERY_DELAY):
            result.notes.append(
                f"installment {payment.reference} processing, never sent to the processor: "
                f"recovered after the worker's delay of {RECOVERY_DELAY}")
            continue
        if payment.status not in INSTALLMENT_DONE:
            why = f" ({payment.failure_code})" if payment.failure_code else ""
            result.violations.append(
                f"installment {payment.reference} (plan {payment.plan_id} #"
                f"{payment.installment_number}, due {payment.scheduled_for}) is "
                f"{payment.status}{why}")
    return result
