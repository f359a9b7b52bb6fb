"""What an agent sends a customer: a message they typed, the secure link, an offer; and the
agent's claim and hand-back as actions that commit and tell the agents' feed.

A message is refused (a ``Refused`` error, or ``handoffs.OwnedByAnother``) when the number opted
out, another agent owns the conversation, the text is empty or longer than ``MAX_SEGMENTS``
segments, or it is the customer's quiet hours (Reg F) and the customer has not written within
the last hour (then it answers them, it does not reach out). Sending claims the conversation
for the agent when no agent owns it: from then on the bot stays quiet and the customer's
messages go to the agent (an agent and the bot answering the same text would talk over each
other). The text is sent through the SMS provider with Twilio's status callback, as every
proactive text is, and stored with author ``agent:NAME``; its delivery status then shows in the
transcript.

Each action commits its own transaction (a text that left must be recorded) and then publishes
its event (bot/inbox/feed.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import Settings
from bot.coordination import Coordinator
from bot.inbox import feed, handoffs
from bot.inbox.reads import customer_wrote_recently
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Message, Offer
from bot.outreach.compliance import in_quiet_hours
from bot.plans import offers
from bot.providers import Providers
from bot.providers.sms import RecipientOptedOut, SmsError
from bot.text import gsm7, i18n
from bot.text.i18n import N_

# The bot's own rule for every text it writes (two segments: 306 GSM-7 characters, or 134 once
# one character needs UCS-2); an agent's text is held to it too.
MAX_SEGMENTS = 2
# The audit trail's actor is 40 characters: "agent:" and the name must fit.
MAX_AGENT_NAME = 34
# Anything longer is refused before it is measured.
MAX_BODY_CHARS = 2000


class Refused(Exception):
    """An agent's action the rules refuse; ``code`` names the rule, ``str()`` says it to a
    person."""

    code = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class OptedOut(Refused):
    code = "opted_out"


class EmptyMessage(Refused):
    code = "empty"


class MessageTooLong(Refused):
    code = "too_long"


class InvalidText(Refused):
    code = "invalid_text"


class QuietHours(Refused):
    code = "quiet_hours"


class NoAccount(Refused):
    code = "no_account"


class InvalidAgent(Refused):
    code = "invalid_agent"


class NotSent(Refused):
    """The SMS provider did not take the message; nothing was stored."""

    code = "not_sent"


@dataclass(frozen=True)
class Segments:
    """What a text costs, for the console's counter."""

    encoding: str  # GSM-7 | UCS-2
    characters: int
    segments: int
    max_segments: int
    non_gsm7: tuple[str, ...]  # the characters that make it UCS-2

    @property
    def fits(self) -> bool:
        return 0 < self.segments <= self.max_segments


@dataclass(frozen=True)
class SentReply:
    message_id: int
    sid: str
    status: str  # Twilio's first status ("queued", ...)
    body: str  # as sent (look-alike characters made GSM-7)
    segments: int
    claimed: bool  # the send claimed the conversation for the agent


def prepare(body: str) -> str:
    """The text as it will be sent: trimmed, line breaks as \\n, and characters that only look
    different from GSM-7 ones (curly quotes, dashes, á) rewritten, so they do not turn the whole
    message into UCS-2. Emoji and other scripts are kept (UCS-2)."""
    text = body.replace("\r\n", "\n").replace("\r", "\n").strip()
    return gsm7.to_gsm7(text, replacement=None).strip()


def segments(body: str) -> Segments:
    text = prepare(body[:MAX_BODY_CHARS * 2])
    return Segments(
        encoding=gsm7.encoding(text),
        characters=len(text),
        segments=gsm7.segment_count(text) if text else 0,
        max_segments=MAX_SEGMENTS,
        non_gsm7=tuple(dict.fromkeys(gsm7.non_gsm7_chars(text))),
    )


def check_agent(agent: str) -> str:
    name = agent.strip() if isinstance(agent, str) else ""
    if not name or len(name) > MAX_AGENT_NAME or not name.isprintable():
        raise InvalidAgent(f"agent must be a name of 1 to {MAX_AGENT_NAME} characters")
    return name


def check_body(body: str) -> str:
    if len(body) > MAX_BODY_CHARS:
        raise MessageTooLong(f"the message is longer than {MAX_SEGMENTS} SMS segments")
    text = prepare(body)
    if not text:
        raise EmptyMessage("the message is empty")
    if gsm7.has_control_characters(text):
        # A NUL or an escape would reach the carrier (and PostgreSQL refuses NUL in text).
        raise InvalidText("the message has control characters, which cannot be sent")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no carrier or database takes it
        raise InvalidText("the message has characters that cannot be sent") from None
    count = gsm7.segment_count(text)
    if count > MAX_SEGMENTS:
        limit = 306 if gsm7.is_gsm7(text) else 134
        raise MessageTooLong(
            f"the message is {count} SMS segments; at most {MAX_SEGMENTS} "
            f"({limit} characters in {gsm7.encoding(text)})"
        )
    return text


def refuse_if_owned(conv: Conversation, agent: str) -> None:
    """One owner at a time: only the owner acts on a claimed conversation."""
    if conv.status == "agent" and conv.assignee not in (None, agent):
        raise handoffs.OwnedByAnother(conv.assignee)


async def _refuse_if_closed(
    session: AsyncSession, conv: Conversation, agent: str, settings: Settings, now: datetime
) -> Account | None:
    refuse_if_owned(conv, agent)
    if await ledger.is_opted_out(session, conv.phone):
        raise OptedOut("the customer opted out of texts: nothing may be sent to this number")
    account = await session.get(Account, conv.account_id) if conv.account_id else None
    flow = settings.flow
    if account is not None:
        flow = flow.for_creditor(await ledger.creditor_of(session, account))
    if in_quiet_hours(now, account.timezone if account else None, flow) and \
            not customer_wrote_recently(conv, now):
        raise QuietHours(
            "it is the customer's quiet hours and they have not written within the last hour"
        )
    return account


async def send_agent_message(
    session: AsyncSession,
    providers: Providers,
    conv: Conversation,
    *,
    agent: str,
    body: str,
    now: datetime,
    settings: Settings,
    coordinator: Coordinator | None = None,
) -> SentReply:
    """Send ``body`` from ``agent`` (a NAME) to the conversation's number; commits. Raises
    InvalidAgent, EmptyMessage, MessageTooLong, handoffs.OwnedByAnother, OptedOut, QuietHours,
    NotSent (the provider refused; nothing stored)."""
    agent = check_agent(agent)
    text = check_body(body)
    return await _send(session, providers, conv, agent=agent, text=text, now=now,
                       settings=settings, coordinator=coordinator, kind="agent_message_sent")


async def send_filled(
    session: AsyncSession,
    providers: Providers,
    conv: Conversation,
    *,
    agent: str,
    body: str,
    now: datetime,
    settings: Settings,
    coordinator: Coordinator | None = None,
) -> SentReply:
    """As send_agent_message, for a text filled by canned.fill with ``link_url=LINK_SLOT``: the
    link is minted as the text leaves (a canned reply's {link})."""
    agent = check_agent(agent)
    text = check_body(body)
    return await _send(session, providers, conv, agent=agent, text=text, now=now,
                       settings=settings, coordinator=coordinator, kind="agent_message_sent",
                       link_slot=LINK_SLOT)


async def _send(
    session: AsyncSession, providers: Providers, conv: Conversation, *, agent: str, text: str,
    now: datetime, settings: Settings, coordinator: Coordinator | None, kind: str,
    link_slot: str | None = None,
) -> SentReply:
    phone = conv.phone  # a failed send rolls back, and the row with it
    account = await _refuse_if_closed(session, conv, agent, settings, now)
    if link_slot is not None and link_slot in text:
        if account is None:
            raise NoAccount("the number is not linked to an account: there is no link to send")
        hours = settings.link_lifetime_hours
        token = await ledger.create_link(
            session, account_id=account.id, at=now, lifetime=timedelta(hours=hours),
            resume_state=conv.state if conv.flow == "payment" else None,
        )
        text = check_body(text.replace(link_slot, f"{settings.public_base_url}/p/{token}"))
    previous = conv.assignee
    claimed = conv.status != "agent" or conv.assignee is None
    if claimed:
        await handoffs.claim(session, conv, agent=agent, at=now)
    try:
        sent = await providers.sms.send(
            to=conv.phone, body=text,
            status_callback=f"{settings.public_base_url}/webhooks/twilio/status",
        )
    except RecipientOptedOut as exc:
        await session.rollback()
        await ledger.set_opt_out(session, phone, opted_out=True, keyword="carrier 21610",
                                 channel="carrier", at=now)
        await session.commit()
        raise OptedOut("the customer opted out of texts at the carrier") from exc
    except SmsError as exc:
        await session.rollback()
        raise NotSent("the SMS provider did not take the message; try again") from exc
    message = Message(
        conversation_id=conv.id, direction="outbound", channel="sms", provider_sid=sent.sid,
        phone=conv.phone, body=text, status=sent.status, author=f"agent:{agent}",
        created_at=now,
    )
    session.add(message)
    conv.updated_at = now
    await handoffs.agent_replied(session, conv, at=now)
    await session.flush()
    count = gsm7.segment_count(text)
    await ledger.audit(session, kind, at=now, actor=f"agent:{agent}",
                       account_id=conv.account_id, phone=conv.phone, message_id=message.id,
                       segments=count)
    await session.commit()
    if claimed:
        await feed.publish(coordinator, feed.claimed(conv.phone, agent=agent, previous=previous,
                                                     at=now))
    await feed.publish(coordinator, feed.agent_message(
        conv.phone, agent=agent, body=text, message_id=message.id, status=sent.status, at=now))
    return SentReply(message_id=message.id, sid=sent.sid, status=sent.status, body=text,
                     segments=count, claimed=claimed)


# Where a fresh link goes in a text (a canned reply's {link}); minted only when it is sent.
LINK_SLOT = "{link}"
# The bot's LINK reply (bot/templates/sms/link.txt), the link minted as the bot mints it.
LINK_TEXT = N_("Your secure link: %(link_url)s (valid for %(link_hours)s hours).")


async def customer_language(session: AsyncSession, conv: Conversation) -> str:
    """What the customer reads the bot's words in: their choice by text, else the account's."""
    account = await session.get(Account, conv.account_id) if conv.account_id else None
    return i18n.language_for(conv.language, account.language if account else None)


async def send_link(
    session: AsyncSession,
    providers: Providers,
    conv: Conversation,
    *,
    agent: str,
    now: datetime,
    settings: Settings,
    coordinator: Coordinator | None = None,
) -> SentReply:
    """Send the customer's secure link (a fresh one, resuming the flow where it stands), under
    the same rules as a message; commits. Raises what send_agent_message raises, and NoAccount
    for a number not linked to an account."""
    agent = check_agent(agent)
    with i18n.using(await customer_language(session, conv)):
        text = gsm7.to_gsm7(i18n.gettext(LINK_TEXT) % {
            "link_url": LINK_SLOT, "link_hours": settings.link_lifetime_hours})
    return await _send(session, providers, conv, agent=agent, text=text, now=now,
                       settings=settings, coordinator=coordinator, kind="agent_link_sent",
                       link_slot=LINK_SLOT)


async def claim(
    session: AsyncSession,
    conv: Conversation,
    *,
    agent: str,
    now: datetime,
    reassign: bool = False,
    coordinator: Coordinator | None = None,
) -> None:
    """The agent takes the conversation (``reassign``: a supervisor takes it from another);
    commits. Claiming one's own conversation again changes (and tells) nothing. Raises
    handoffs.OwnedByAnother, InvalidAgent."""
    agent = check_agent(agent)
    if conv.status == "agent" and conv.assignee == agent:
        return
    previous = conv.assignee if conv.status == "agent" else None
    await handoffs.claim(session, conv, agent=agent, at=now, reassign=reassign)
    conv.updated_at = now
    await session.commit()
    await feed.publish(coordinator, feed.claimed(conv.phone, agent=agent, previous=previous,
                                                 at=now))


# What the customer reads when an agent hands back (issue 14's words).
BACK_WITH_BOT = N_("You're back with the automated assistant. Reply MENU for options.")


async def hand_back(
    session: AsyncSession,
    conv: Conversation,
    *,
    agent: str,
    now: datetime,
    providers: Providers | None = None,
    settings: Settings | None = None,
    coordinator: Coordinator | None = None,
) -> bool:
    """Resolve the conversation back to the bot (from the main menu), recording the agent;
    commits. With ``providers`` and ``settings`` a customer who was waiting for or with a person
    is told they are back with the automated assistant, unless the number opted out or it is
    their quiet hours and they have not written within the hour (the hand-back stands either
    way). True when they were told."""
    agent = check_agent(agent)
    was_away = conv.status in handoffs.OPEN  # one who never left the bot is not told
    await handoffs.resolve(session, conv, by=f"agent:{agent}", at=now)
    told = False
    if providers is not None and settings is not None and was_away:
        try:
            await _refuse_if_closed(session, conv, agent, settings, now)
            with i18n.using(await customer_language(session, conv)):
                body = gsm7.to_gsm7(i18n.gettext(BACK_WITH_BOT))
            sent = await providers.sms.send(
                to=conv.phone, body=body,
                status_callback=f"{settings.public_base_url}/webhooks/twilio/status",
            )
        except (Refused, SmsError):
            pass  # nothing may (or could) be sent: the conversation is the bot's all the same
        else:
            session.add(Message(
                conversation_id=conv.id, direction="outbound", channel="sms",
                provider_sid=sent.sid, phone=conv.phone, body=body,
                status=sent.status, author="bot", created_at=now,
            ))
            told = True
    await session.commit()
    await feed.publish(coordinator, feed.resolved(conv.phone, by=f"agent:{agent}", at=now))
    return told


async def make_offer(
    session: AsyncSession,
    conv: Conversation,
    *,
    agent: str,
    request: offers.OfferRequest,
    settings: Settings,
    now: datetime,
) -> Offer:
    """An offer made by the agent, through the offer rules (bot/plans/offers.py, which commits;
    with ``send_via`` the worker sends it when it may). Raises offers.InvalidOffer, NoAccount."""
    agent = check_agent(agent)
    refuse_if_owned(conv, agent)
    account = await session.get(Account, conv.account_id) if conv.account_id else None
    if account is None:
        raise NoAccount("the number is not linked to an account: there is nothing to offer")
    request = dataclasses.replace(request, created_by=f"agent:{agent}")
    # The creditor's own limits (installments, horizon, lifetime), as every other offer path.
    flow = settings.flow.for_creditor(await ledger.creditor_of(session, account))
    return await offers.create_offer(session, account, request, flow=flow, at=now)
