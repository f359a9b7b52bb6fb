""""Who is this": who is texting (the creditor, as customers read its name), the debt-collector
disclosure (the creditor's own text, else the default outreach uses) and the support contact.

Answered by the router whoever has the conversation, as HELP is; an unknown number reads the
deployment's brand and nothing of any account."""

from __future__ import annotations

from bot.ledger import queries as ledger
from bot.ledger.models import Account
from bot.sms.context import TurnContext
from states.replies import Reply


async def who_we_are(ctx: TurnContext, account: Account | None) -> Reply:
    """The reply; the brand and the support contact come with every rendered reply (the
    creditor's where the number is on an account). An empty ``disclosure`` reads the default."""
    disclosure = ""
    if account is not None:
        creditor = await ledger.creditor_of(ctx.session, account)
        disclosure = (creditor.disclosure if creditor is not None else "") or ""
    return Reply("who_we_are", {"disclosure": disclosure.strip()})
