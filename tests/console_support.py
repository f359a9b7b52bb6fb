"""Staff for the console's tests: accounts made through bot/staff, signed in through the real
forms (CSRF and all), and their TOTP codes computed as an authenticator app would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import pyotp
from aiohttp.test_utils import TestClient

from bot import appkeys
from bot.ledger.models import Staff
from bot.staff import accounts
from bot.staff.credentials import SecretSeal

PASSWORD = "correct horse battery staple"


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name} in the page"
    return found.group(1).replace("&#43;", "+").replace("&amp;", "&")


async def add_staff(
    app, email: str = "ana@paybot.test", name: str = "Ana", role: str = "agent",  # type: ignore[no-untyped-def]
    password: str | None = PASSWORD, totp_secret: str | None = None,
) -> Staff:
    now = app[appkeys.CLOCK].now()
    async with app[appkeys.DATABASE].session() as session:
        added = await accounts.add(session, email, name, role, at=now, by="test",
                                   password=password)
        if totp_secret is not None:
            seal = SecretSeal(app[appkeys.SETTINGS].secret_key)
            await accounts.enrol_second_factor(session, added.staff, totp_secret, seal=seal,
                                               at=now)
        await session.commit()
        return added.staff


def code_at(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


@dataclass
class Console:
    """A browser at the console: the test client and its cookie jar."""

    client: TestClient

    async def get(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return await self.client.get(path, allow_redirects=False, **kwargs)

    async def form_token(self, path: str = "/agent/login") -> str:
        response = await self.get(path)
        return hidden(await response.text(), "csrf_token")

    async def sign_in(self, email: str = "ana@paybot.test", password: str = PASSWORD,
                      code: str | None = None):  # type: ignore[no-untyped-def]
        token = await self.form_token()
        response = await self.client.post(
            "/agent/login", allow_redirects=False,
            data={"csrf_token": token, "email": email, "password": password, "next": "/agent/"},
        )
        if code is None or response.status != 200:
            return response
        html = await response.text()
        return await self.client.post(
            "/agent/login/code", allow_redirects=False,
            data={"csrf_token": hidden(html, "csrf_token"), "ticket": hidden(html, "ticket"),
                  "code": code, "next": "/agent/"},
        )

    async def csrf(self) -> str:
        response = await self.get("/agent/inbox/waiting")
        assert response.status == 200, response.status
        return hidden(await response.text(), "csrf_token")

    async def post(self, path: str, data: dict[str, str] | None = None, *,
                   csrf: str | None = None):  # type: ignore[no-untyped-def]
        token = csrf if csrf is not None else await self.csrf()
        return await self.client.post(path, allow_redirects=False,
                                      data={"csrf_token": token, **(data or {})})
