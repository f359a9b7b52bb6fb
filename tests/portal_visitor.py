"""A browser of its own on the portal's look-up pages, for tests that need many at once (each its
own cookie, so its own portal session), coming from an address of its choosing through
X-Forwarded-For (believed only where a test trusts the test client's 127.0.0.1 as a proxy).

The `visitor` fixture (a plugin of tests/conftest.py) makes them and closes them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient

from bot import appkeys


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def normalized(text: str) -> str:
    """Random per-session values (CSRF and cookie tokens) are not what is compared."""
    text = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value="*"', text)
    return re.sub(r"(paybot_session|paybot_form)=[^;]+", r"\1=*", text)


class Visitor:
    """One browser; `transcript` keeps every answer it got, whole (status, headers, page)."""

    def __init__(self, client: TestClient, address: str | None = None) -> None:
        self.client = client
        origin = str(client.make_url("/"))
        self.http = ClientSession(
            base_url=origin,
            cookie_jar=CookieJar(unsafe=True, treat_as_secure_origin=[origin]),
        )
        self.address = address
        self.html = ""
        self.status = 0
        self.csrf = ""
        self.transcript: list[tuple[object, ...]] = []

    @property
    def text(self) -> str:
        return visible_text(self.html)

    def headers(self) -> dict[str, str]:
        return {"X-Forwarded-For": self.address} if self.address else {}

    async def _record(self, method: str, path: str, response) -> None:  # type: ignore[no-untyped-def]
        self.html = await response.text()
        self.status = response.status
        if 'name="csrf_token"' in self.html:  # a client may post again without the form
            self.csrf = csrf_of(self.html)
        # Codes go out after the answer; a test reads them once they are out.
        await self.client.app[appkeys.ENGINE].settled()
        headers = sorted(  # the date and the request's own id differ on every answer
            (name, normalized(value)) for name, value in response.headers.items()
            if name.lower() not in ("date", "x-request-id")
        )
        self.transcript.append((method, path, response.status, headers, normalized(self.html)))

    async def get(self, path: str) -> str:
        response = await self.http.get(path, headers=self.headers(), allow_redirects=False)
        await self._record("GET", path, response)
        return await self._follow(response)

    async def post(self, path: str, data: dict[str, str]) -> str:
        fields = {"csrf_token": self.csrf, **data}
        response = await self.http.post(
            path, data=fields, headers=self.headers(), allow_redirects=False
        )
        await self._record("POST", path, response)
        return await self._follow(response)

    async def _follow(self, response) -> str:  # type: ignore[no-untyped-def]
        if response.status in (302, 303):  # each step of the way recorded, from this address
            return await self.get(response.headers["Location"])
        return self.html

    async def lookup(self, identifier: str) -> str:
        await self.get("/portal/")
        return await self.post("/portal/lookup", {"identifier": identifier})

    async def verify(self, **fields: str) -> str:
        return await self.post("/portal/verify", fields)


@pytest.fixture
async def visitor(client: TestClient) -> AsyncIterator[Callable[..., Visitor]]:
    made: list[Visitor] = []

    def make(address: str | None = None) -> Visitor:
        made.append(Visitor(client, address))
        return made[-1]

    yield make
    for one in made:
        await one.http.close()
