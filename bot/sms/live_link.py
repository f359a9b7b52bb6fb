"""The conversation's personal link: the one last handed out, while it still opens, rather than a
new one on every prompt (a misread reply, a hello, the menu again). A new link is minted when there
is none, when the last one has expired, was revoked or used, or is close to expiring.

The conversation row keeps the live link's id and its raw token sealed (links are otherwise kept
only as hashes), so finding it costs one read by primary key, on a row the turn's session may
already hold. The seal's key is derived from SECRET_KEY: after a rotation the old seal no longer
opens and the next prompt simply mints a new link."""

from __future__ import annotations

import base64
import binascii
import functools
import os
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.settings import Settings
from bot.ledger import queries as ledger
from bot.ledger.models import Account, Conversation, Link

# A link this close to its end is not handed out again: the customer may open it later.
FRESH_ENOUGH = timedelta(hours=1)


async def payment_link(
    session: AsyncSession,
    *,
    conv: Conversation | None,
    account: Account,
    now: datetime,
    settings: Settings,
    fresh: bool = False,
) -> str:
    """The URL of the conversation's live payment link, or of a new one, which becomes the live
    one. ``fresh``: always a new one (LINK asks for one, and its reply says how long it lasts)."""
    base = f"{settings.public_base_url}/p/"
    seal = seal_for(settings.secret_key)
    if conv is not None and conv.live_link_id is not None and not fresh:
        link = await session.get(Link, conv.live_link_id)
        if link is not None and _still_good(link, account, now):
            token = seal.open(conv.live_link_sealed, phone=conv.phone, link=link)
            if token is not None:
                return f"{base}{token}"
    token, link = ledger.mint_link(
        session,
        account_id=account.id,
        at=now,
        lifetime=timedelta(hours=settings.link_lifetime_hours),
        resume_state=conv.state if conv else None,
    )
    if conv is not None:
        # Written with the turn's checkpoint: the link's INSERT, then this row's UPDATE.
        conv.live_link = link
        conv.live_link_sealed = seal.close(token, phone=conv.phone, link=link)
    return f"{base}{token}"


def _still_good(link: Link, account: Account, now: datetime) -> bool:
    """A plain payment link of this account (no preset amount, fee or offer), open for a while
    yet (an agent's or a campaign's revocation included)."""
    return (
        link.account_id == account.id
        and link.purpose == "payment"
        and link.offer_id is None
        and link.amount_cents is None
        and not link.fee_cents
        and link.revoked_at is None
        and link.used_at is None
        and link.expires_at - now > FRESH_ENOUGH
    )


class TokenSeal:
    """Seals a live link's raw token for its conversation row (AES-256-GCM, a key derived from
    SECRET_KEY for this purpose only). The sealed text names its phone and its link's hash as
    associated data: moved to another conversation or set beside another link, it does not open."""

    NONCE_BYTES = 12

    def __init__(self, secret_key: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"paybot live link token"
        ).derive(secret_key.encode())
        self._aead = AESGCM(key)

    def close(self, token: str, *, phone: str, link: Link) -> str:
        nonce = os.urandom(self.NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, token.encode(), _bound_to(phone, link))
        return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str | None, *, phone: str, link: Link) -> str | None:
        """The token; None when there is none, or it was sealed under another SECRET_KEY, for
        another phone or link, or altered."""
        if not sealed:
            return None
        try:
            raw = base64.urlsafe_b64decode(sealed.encode("ascii"))
            nonce, body = raw[: self.NONCE_BYTES], raw[self.NONCE_BYTES :]
            return self._aead.decrypt(nonce, body, _bound_to(phone, link)).decode()
        except (InvalidTag, ValueError, binascii.Error, UnicodeError):
            return None


@functools.lru_cache(maxsize=4)
def seal_for(secret_key: str) -> TokenSeal:
    """One seal per SECRET_KEY: the key is derived once, not on every turn."""
    return TokenSeal(secret_key)


def _bound_to(phone: str, link: Link) -> bytes:
    return f"{phone}\0{link.token_sha256}".encode()
