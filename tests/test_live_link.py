"""The conversation's live link, kept with the conversation (bot/sms/live_link.py), through the
signed Twilio webhook: a misread re-sends the link the conversation last handed out while it is
good; a new one when it is about to expire, was revoked or used, belongs to another account, was
sealed under an older SECRET_KEY, or was never stored (a conversation from before migration
0015); LINK always mints one, which becomes the live one. The raw token is kept sealed, and
finding it is one read by primary key (no read of the conversation's texts)."""

from __future__ import annotations

import base64
import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select, update

from bot import appkeys
from bot.app import create_app
from bot.ledger import queries as ledger
from bot.ledger.models import Conversation, Link
from bot.security import token_digest
from bot.sms.live_link import FRESH_ENOUGH, TokenSeal
from tests.conftest import SmsPhone
from tests.seed import add_account

MARIA = "+15555550100"
LIFETIME = timedelta(hours=72)  # Settings.link_lifetime_hours
SORRY = "Sorry, I did not understand that."
MENU = re.compile(
    r"Your balance on Acme Card ending 4821 is \$1,250\.00\. Reply PAY to pay by text or open "
    r"https://paybot\.test/p/(\S+) \. Reply AGENT for a person, HELP for help\."
)
LINK_REPLY = re.compile(r".*https://paybot\.test/p/(\S+).*", re.S)


async def menu_token(maria: SmsPhone, text: str = "hi") -> str:
    """The token of the link in the menu ``text`` brings (a misread brings it after a sorry)."""
    (reply,) = await maria.send(text)
    menu = reply.split("\n")[-1]
    if text != "hi":
        assert reply.split("\n")[0] == SORRY, reply
    match = MENU.fullmatch(menu)
    assert match, reply
    return match.group(1)


async def links(app) -> list[Link]:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        return list(await session.scalars(select(Link).order_by(Link.id)))


async def conversation(app, phone: str = MARIA) -> Conversation:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        conv = await session.scalar(select(Conversation).where(Conversation.phone == phone))
        assert conv is not None
        return conv


async def change(app, statement) -> None:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(statement)
        await session.commit()


async def link_of(app, token: str) -> Link:  # type: ignore[no-untyped-def]
    async with app[appkeys.DATABASE].session() as session:
        link = await ledger.link_for_token(session, token)
        assert link is not None
        return link


async def test_a_misread_re_sends_the_live_link_kept_sealed_on_the_conversation(app, phone):
    account = await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    assert [await menu_token(maria, text) for text in ("banana", "hi", "what")] == [token] * 3
    (link,) = await links(app)
    assert (link.token_sha256, link.account_id, link.purpose) == (
        token_digest(token), account.id, "payment")
    conv = await conversation(app)
    assert conv.live_link_id == link.id
    # At rest only sealed: neither the token nor its bytes appear in the stored text.
    assert conv.live_link_sealed and token not in conv.live_link_sealed
    raw = base64.urlsafe_b64decode(conv.live_link_sealed)
    assert token.encode() not in raw


async def test_finding_the_live_link_is_one_read_by_key_and_no_read_of_texts(app, phone):
    await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(" ".join(statement.split()))

    engine = app[appkeys.DATABASE].engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert await menu_token(maria, "banana") == token
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    on_links = [s for s in statements if " links" in s]
    assert len(on_links) == 1 and on_links[0].startswith("SELECT"), on_links
    assert re.search(r"FROM links WHERE links\.id = \S+$", on_links[0]), on_links  # ? or $1
    assert not [s for s in statements if s.startswith("SELECT") and "FROM messages" in s]


async def test_a_link_within_an_hour_of_its_end_is_not_sent_again(app, phone, clock):
    await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    clock.advance(LIFETIME - FRESH_ENOUGH - timedelta(minutes=1))
    assert await menu_token(maria, "banana") == token  # 61 minutes left: still handed out
    clock.advance(timedelta(minutes=2))
    fresh = await menu_token(maria, "banana")  # 59 minutes left: a new one
    assert fresh != token
    assert (await conversation(app)).live_link_id == (await link_of(app, fresh)).id
    assert await menu_token(maria) == fresh  # and that one is the live one now
    assert len(await links(app)) == 2


@pytest.mark.parametrize("done", ["revoked_at", "used_at"])
async def test_a_revoked_or_used_link_is_never_sent_again(app, phone, clock, done):
    """Revoked by an agent or a campaign (both set revoked_at), or its purpose done."""
    await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    await change(app, update(Link).where(Link.token_sha256 == token_digest(token))
                 .values({done: clock.now()}))
    fresh = await menu_token(maria, "banana")
    assert fresh != token
    assert await menu_token(maria, "what") == fresh
    assert len(await links(app)) == 2


async def test_link_mints_a_new_one_that_becomes_the_live_one(app, phone):
    await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    (asked,) = await maria.send("link")
    fresh = LINK_REPLY.fullmatch(asked).group(1)  # type: ignore[union-attr]
    assert fresh != token and token not in asked
    assert await menu_token(maria, "banana") == fresh
    assert len(await links(app)) == 2


async def test_another_accounts_link_is_not_sent(app, phone):
    """The number now answers for another account: the first account's link is not its own."""
    first = await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    other = await add_account(app, ref="ACC-2002", phone="+15555550177", first_name="Ana")
    await change(app, update(Conversation).where(Conversation.phone == MARIA)
                 .values(account_id=other.id))
    fresh = await menu_token(maria, "banana")
    assert fresh != token
    assert ((await link_of(app, token)).account_id, (await link_of(app, fresh)).account_id) == (
        first.id, other.id)


async def test_after_secret_key_rotation_a_new_link_is_minted(app, phone, settings, providers,
                                                              clock, aiohttp_client):
    await add_account(app)
    token = await menu_token(phone())
    rotated = create_app(settings.replace(secret_key="a-rotated-secret-key"), providers, clock)
    maria = SmsPhone(client=await aiohttp_client(rotated), number=MARIA)
    fresh = await menu_token(maria, "banana")  # the old seal does not open: no error, a new link
    assert fresh != token
    assert await menu_token(maria, "what") == fresh
    assert len(await links(app)) == 2


async def test_a_conversation_from_before_the_migration_mints_a_new_link(app, phone):
    """Rows from before 0015 have no live link; the texts that carried one are not read."""
    await add_account(app)
    maria = phone()
    token = await menu_token(maria)
    await change(app, update(Conversation).where(Conversation.phone == MARIA)
                 .values(live_link_id=None, live_link_sealed=None))
    fresh = await menu_token(maria, "banana")
    assert fresh != token
    assert await menu_token(maria, "what") == fresh


async def test_the_token_is_never_logged(app, phone, caplog):
    await add_account(app)
    maria = phone()
    with caplog.at_level(logging.DEBUG):
        tokens = {await menu_token(maria), await menu_token(maria, "banana")}
        (asked,) = await maria.send("link")
        tokens.add(LINK_REPLY.fullmatch(asked).group(1))  # type: ignore[union-attr]
    # Ours at every level; libraries at the level a deployment runs them (aiosqlite's DEBUG
    # lines carry every statement's parameters, the texts sent included).
    ours = ("bot", "webhooks", "portal_fallback", "agent_console")
    records = [r for r in caplog.records
               if r.levelno >= logging.INFO or r.name.split(".")[0] in ours]
    assert len(tokens) == 2 and [r for r in records if r.getMessage() == "turn answered"]
    logged = "\n".join(repr(record.__dict__) for record in records)
    assert not [token for token in tokens if token in logged]


def test_a_seal_opens_only_with_its_key_its_phone_and_its_link() -> None:
    link = Link(token_sha256=token_digest("tok-" + "x" * 20))
    other_link = Link(token_sha256=token_digest("tok-" + "y" * 20))
    seal = TokenSeal("test-secret-key")
    sealed = seal.close("tok-" + "x" * 20, phone=MARIA, link=link)
    assert seal.open(sealed, phone=MARIA, link=link) == "tok-" + "x" * 20
    assert seal.close("tok-" + "x" * 20, phone=MARIA, link=link) != sealed  # a fresh nonce
    assert TokenSeal("another-key").open(sealed, phone=MARIA, link=link) is None
    assert seal.open(sealed, phone="+15555550177", link=link) is None
    assert seal.open(sealed, phone=MARIA, link=other_link) is None
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for bad in (flipped, "", None, "not base64!", "AAAA"):
        assert seal.open(bad, phone=MARIA, link=link) is None
