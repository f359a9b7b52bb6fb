"""One conversation: the whole transcript (customer, bot, agents; SMS and web; delivery status),
the flow step, the account beside it (bot/inbox/reads.py), and the agent's actions: claim (a
supervisor may reassign), reply (with canned replies), the secure link, a private note, hand back
to the bot, mark a wrong number. Each action is a POST with the session's CSRF token, done by
bot/inbox (which audits it as agent:NAME and tells the live feed), then redirected back here
(post/redirect/get); a refusal is shown on the page in the rules' own words, the text kept."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent_console.app import HEADERS, current, page
from bot import appkeys
from bot.inbox import canned, handoffs, notes, reads, replies
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation
from bot.plans import offers

# What the page says after an action (by key: nothing a request wrote is shown back).
DONE = {
    "claimed": "The conversation is yours: the bot stays quiet until you hand it back.",
    "sent": "Sent.",
    "link": "The secure link was sent.",
    "note": "Note kept (only staff see it).",
    "handed_back": "Handed back to the bot; the customer was told to reply MENU for options.",
    "handed_back_quiet": "Handed back to the bot (the customer could not be told now).",
    "offer": "Offer made; it goes out as chosen (the worker sends it when the customer may be "
             "texted).",
    "wrong_number": "Marked as a wrong number: the number is unlinked from the account and will "
                    "not be texted about it again.",
}
class _BadOffer(replies.Refused):
    code = "invalid_offer"


STATUS_FOR = {
    handoffs.OwnedByAnother: 409, replies.OptedOut: 409, replies.QuietHours: 409,
    replies.EmptyMessage: 422, replies.MessageTooLong: 422, replies.NoAccount: 409,
    replies.NotSent: 502, canned.CannedRefused: 422, _BadOffer: 422,
}


def add_routes(console: web.Application) -> None:
    console.router.add_get("/c/{digits}", show)
    console.router.add_post("/c/{digits}/claim", claim)
    console.router.add_post("/c/{digits}/reply", reply)
    console.router.add_post("/c/{digits}/link", send_link)
    console.router.add_post("/c/{digits}/note", note)
    console.router.add_post("/c/{digits}/handback", hand_back)
    console.router.add_post("/c/{digits}/wrong-number", wrong_number)
    console.router.add_post("/c/{digits}/offer", make_offer)


def phone_of(request: web.Request) -> str:
    digits = request.match_info["digits"]
    if not digits.isascii() or not digits.isdigit() or not 8 <= len(digits) <= 15:
        raise web.HTTPNotFound()
    return "+" + digits


def _me(request: web.Request) -> Any:
    found = current(request)
    assert found is not None  # the session middleware let the request through
    return found.staff


async def _canned_for(db: Any, request: web.Request, conv: Conversation) -> list[dict[str, str]]:
    """Each canned reply filled for this customer ({link} left for the send to mint)."""
    settings = request.config_dict[appkeys.SETTINGS]
    account = await db.get(Account, conv.account_id) if conv.account_id else None
    creditor = await ledger.creditor_of(db, account) if account is not None else None
    brand = (creditor.shown_name if creditor else "") or settings.brand
    support = (creditor.support_contact if creditor else "") or settings.support_contact
    filled = []
    for item in await canned.list_canned(db):
        try:
            text = await canned.fill(db, item.body, account, brand=brand,
                                     support_contact=support,
                                     link_url=replies.LINK_SLOT)
        except canned.CannedRefused:
            continue  # a placeholder with no value for this customer: not offered here
        filled.append({"shortcut": item.shortcut, "text": text})
    return filled


async def render(request: web.Request, *, status: int = 200, error: str | None = None,
                 draft: str = "", note_draft: str = "") -> web.Response:
    phone = phone_of(request)
    settings = request.config_dict[appkeys.SETTINGS]
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        detail = await reads.conversation_detail(db, phone, now=now, flow=settings.flow)
        if detail is None:
            raise web.HTTPNotFound()
        conv = await reads.get_conversation(db, phone)
        assert conv is not None
        part = request.query.get("part") is not None
        filled = [] if part else await _canned_for(db, request, conv)
        counts = None if part else await reads.counts(db)
        me = _me(request)
        if not part and request.method == "GET":
            # Who opened which customer's account and when (GLBA-style access log); the live
            # refreshes of an open page (part=1) are the same look, not logged again.
            await ledger.audit(db, "conversation_viewed", at=now, actor=f"agent:{me.name}",
                               account_id=conv.account_id, phone=phone)
            await db.commit()
    row = detail.row
    context = dict(
        title=row.customer_name or "Unknown number", d=detail, row=row, now=now,
        digits=phone[1:], error=error, draft=draft, note_draft=note_draft,
        done=DONE.get(request.query.get("done", "")), canned_replies=filled,
        mine=row.status == "agent" and row.assignee == me.name,
        owned_by_other=row.status == "agent" and row.assignee not in (None, me.name),
        may_reply=not detail.opted_out and (not detail.quiet_hours or
                                            detail.may_reply_in_quiet_hours),
        max_segments=replies.MAX_SEGMENTS, counts=counts,
    )
    template = "conversation_part.html" if request.query.get("part") else "conversation.html"
    return page(request, template, status, **context)


async def show(request: web.Request) -> web.StreamResponse:
    return await render(request)


def _back(request: web.Request, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/agent/c/{request.match_info['digits']}?done={done}",
                            headers=HEADERS)


async def _field(request: web.Request, name: str, limit: int = 4000) -> str:
    form = await request.post()
    value = form.get(name)
    return value[: limit * 2] if isinstance(value, str) else ""


def _refusal(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, handoffs.OwnedByAnother):
        return 409, f"{exc.owner} owns this conversation: only they can act on it."
    status = next((code for kind, code in STATUS_FOR.items() if isinstance(exc, kind)), 409)
    text = str(exc)
    return status, text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


async def _act(request: web.Request, action: Any, *, done: str, draft: str = "",
               note_draft: str = "") -> web.StreamResponse:
    """Run ``action(db, conv, me, now)`` on the conversation; redirect back, or show why not."""
    phone = phone_of(request)
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        # Locked until the action commits (PostgreSQL): of two agents claiming at once, the
        # second sees the first's claim.
        conv = await reads.get_conversation(db, phone, for_update=True)
        if conv is None:
            raise web.HTTPNotFound()
        try:
            result = await action(db, conv, _me(request), now)
        except (replies.Refused, handoffs.OwnedByAnother, handoffs.NoHandoff) as exc:
            await db.rollback()
            status, text = _refusal(exc)
            return await render(request, status=status, error=text, draft=draft,
                                note_draft=note_draft)
    raise _back(request, result if isinstance(result, str) else done)


def _services(request: web.Request) -> dict[str, Any]:
    return {
        "settings": request.config_dict[appkeys.SETTINGS],
        "coordinator": request.config_dict[appkeys.COORDINATOR],
    }


async def claim(request: web.Request) -> web.StreamResponse:
    reassign = await _field(request, "reassign") == "1" and _me(request).role == "supervisor"

    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        await replies.claim(db, conv, agent=me.name, now=now, reassign=reassign,
                            coordinator=request.config_dict[appkeys.COORDINATOR])

    return await _act(request, action, done="claimed")


async def reply(request: web.Request) -> web.StreamResponse:
    body = await _field(request, "body")

    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        send = replies.send_filled if replies.LINK_SLOT in body else replies.send_agent_message
        await send(db, request.config_dict[appkeys.PROVIDERS], conv, agent=me.name, body=body,
                   now=now, **_services(request))

    return await _act(request, action, done="sent", draft=body[:replies.MAX_BODY_CHARS])


async def send_link(request: web.Request) -> web.StreamResponse:
    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        await replies.send_link(db, request.config_dict[appkeys.PROVIDERS], conv,
                                agent=me.name, now=now, **_services(request))

    return await _act(request, action, done="link")


async def note(request: web.Request) -> web.StreamResponse:
    body = await _field(request, "body")

    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        await notes.add_note(db, conv, author=me.name, body=body, now=now,
                             coordinator=request.config_dict[appkeys.COORDINATOR])

    return await _act(request, action, done="note", note_draft=body[:notes.MAX_NOTE_CHARS])


async def hand_back(request: web.Request) -> web.StreamResponse:
    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> str:
        if conv.status == "agent" and conv.assignee not in (None, me.name) \
                and me.role != "supervisor":
            raise handoffs.OwnedByAnother(conv.assignee)
        told = await replies.hand_back(db, conv, agent=me.name, now=now,
                                       providers=request.config_dict[appkeys.PROVIDERS],
                                       **_services(request))
        return "handed_back" if told else "handed_back_quiet"

    return await _act(request, action, done="handed_back")


async def wrong_number(request: web.Request) -> web.StreamResponse:
    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        # bot/inbox/wrong_numbers.py is the handoff-bot slice's (issue 14): one rule for the
        # customer's "wrong number" and the agent's button.
        from bot.inbox.wrong_numbers import mark_wrong_number

        if conv.account_id is None:
            raise replies.NoAccount("the number is not linked to an account")
        if conv.status == "agent" and conv.assignee not in (None, me.name) \
                and me.role != "supervisor":
            raise handoffs.OwnedByAnother(conv.assignee)
        account_id = conv.account_id
        if conv.status in handoffs.OPEN:
            await handoffs.resolve(db, conv, by=f"agent:{me.name}", at=now)
        await mark_wrong_number(db, conv.phone, account_id, f"agent:{me.name}", now)
        await db.commit()
        await request.config_dict[appkeys.COORDINATOR].publish(
            {"type": "wrong_number", "phone": conv.phone, "by": f"agent:{me.name}",
             "at": now.isoformat()})

    return await _act(request, action, done="wrong_number")



def _offer_request(form: Any, now: Any) -> offers.OfferRequest:
    """The form's offer, read as the offer rules take it (they check the rest)."""
    from datetime import date

    from bot.money import InvalidAmount, dollars_to_cents

    kind = form.get("kind")
    send_via = form.get("send_via") or None
    if send_via not in (None, "sms", "email", "both"):
        raise _BadOffer("send via sms, email or both")
    try:
        if kind == "settlement":
            return offers.OfferRequest(kind="settlement", created_by="",
                                       settlement_cents=dollars_to_cents(
                                           str(form.get("amount", ""))[:20]),
                                       send_via=send_via)
        if kind == "plan":
            count = int(str(form.get("count", ""))[:4])
            start = date.fromisoformat(str(form.get("start", ""))[:10])
            return offers.OfferRequest(kind="plan", created_by="", count=count,
                                       frequency=str(form.get("frequency", ""))[:20],
                                       start=start, send_via=send_via)
    except InvalidAmount:
        raise _BadOffer("the settlement amount is not an amount in dollars") from None
    except ValueError:
        raise _BadOffer("a plan needs a number of payments and a start date") from None
    raise _BadOffer("choose a settlement or a plan")


async def make_offer(request: web.Request) -> web.StreamResponse:
    form = await request.post()

    async def action(db: Any, conv: Conversation, me: Any, now: Any) -> None:
        try:
            await replies.make_offer(db, conv, agent=me.name, request=_offer_request(form, now),
                                     settings=request.config_dict[appkeys.SETTINGS], now=now)
        except offers.InvalidOffer as exc:
            raise _BadOffer(f"{exc.field.replace('_', ' ')}: {exc.reason}") from None

    return await _act(request, action, done="offer")
