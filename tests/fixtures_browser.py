"""Fixtures for the portal in a real browser: Playwright (async API) driving Debian's Chromium.

Import them into a test module with ``from tests.fixtures_browser import *  # noqa: F403`` and
mark the module ``pytestmark = pytest.mark.asyncio(loop_scope="session")``: Playwright and its
browser live on the session's event loop, so everything a browser test awaits (the app, its
providers, the gateway) must live on that loop too. That is why this module overrides
``settings``, ``gateway`` and ``providers`` of tests/conftest.py.

* ``browser``   session: one Chromium for the whole run (Playwright gives each launch a fresh,
                temporary user-data dir). Never downloaded: ``/usr/bin/chromium`` only.
* ``settings``  the conftest settings, with PUBLIC_BASE_URL = the live server's own address
                (links in texts, the Twilio signature URL) and Stripe.js from localstripe.
* ``gateway``   a StripeGateway pointed at a flushed localstripe.
* ``live``      the app served over real TCP on 127.0.0.1 (a socket bound before the app is
                built, so the address in the links is known and never races), with a client
                session for signed webhook posts and the API: ``LiveServer``.
* ``viewport``  parametrized: "phone" (360x740, mobile, touch) and "desktop" (1280x800).
* ``tab``       a fresh browser context and page at that viewport: ``Tab`` (screenshots under
                test-artifacts/screenshots/<test>/, every request and console line recorded).
"""

from __future__ import annotations

import re
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, ConsoleMessage, Locator, Page, Request, async_playwright
from twilio.request_validator import RequestValidator

from bot.app import create_app
from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.localstripe import LOCALSTRIPE_KEY, LocalStripe
from bot.providers.sms import SandboxSms
from bot.providers.stripe_gateway import StripeGateway
from tests.conftest import API_KEY, AUTH_TOKEN, twiml_messages

__all__ = [
    "LiveServer",
    "Tab",
    "browser",
    "chromium_path",
    "gateway",
    "live",
    "live_socket",
    "providers",
    "settings",
    "tab",
    "viewport",
]

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium tries to reach hosts this machine cannot.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 360, "height": 740},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000


# --- the browser ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make browser` installs Debian's chromium", pytrace=False
        )
    return CHROMIUM


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        # launch() starts Chromium with a new temporary user-data dir, deleted on close.
        chromium = await playwright.chromium.launch(
            executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


# --- the app, live on 127.0.0.1 ----------------------------------------------------------------


@pytest.fixture
def live_socket() -> Iterator[socket.socket]:
    """Bound first, so PUBLIC_BASE_URL can name the port before the app is built."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


@pytest.fixture
def settings(settings: Settings, live_socket: socket.socket, localstripe: LocalStripe) -> Settings:
    port = live_socket.getsockname()[1]
    return settings.replace(
        public_base_url=f"http://127.0.0.1:{port}",
        stripe_js_url=localstripe.js_url,
        stripe_publishable_key="pk_test_paybot",
        stripe_secret_key=LOCALSTRIPE_KEY,
        stripe_api_base=localstripe.url,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(localstripe: LocalStripe) -> AsyncIterator[StripeGateway]:
    await localstripe.flush_async()
    stripe_gateway = StripeGateway(LOCALSTRIPE_KEY, api_base=localstripe.url, max_network_retries=0)
    try:
        yield stripe_gateway
    finally:
        await stripe_gateway.close()


@pytest_asyncio.fixture(loop_scope="session")
async def providers(settings: Settings, gateway: StripeGateway) -> AsyncIterator[Providers]:
    providers = Providers(
        sms=SandboxSms(),
        email=SandboxEmail(settings.outbox_dir / "email"),
        payments=gateway,
    )
    yield providers
    await providers.close()


@dataclass
class LivePhone:
    """A customer's phone texting PayBot through the signed Twilio webhook of the live server."""

    server: LiveServer
    number: str

    async def send(self, body: str) -> list[str]:
        path = "/webhooks/twilio/sms"
        params = {
            "MessageSid": "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": self.number,
            "To": "+15005550006",
            "Body": body,
            "NumMedia": "0",
        }
        # Twilio signs the public URL: here the live server's own address.
        signature = RequestValidator(AUTH_TOKEN).compute_signature(self.server.url + path, params)
        async with self.server.http.post(
            path, data=params, headers={"X-Twilio-Signature": signature}
        ) as response:
            text = await response.text()
            assert response.status == 200, (response.status, text[:400])
            return twiml_messages(text)


@dataclass
class LiveServer:
    url: str
    app: web.Application
    providers: Providers
    localstripe: LocalStripe
    http: aiohttp.ClientSession

    def phone(self, number: str = "+15555550100") -> LivePhone:
        return LivePhone(self, number)

    async def api(self, path: str) -> Any:
        async with self.http.get(path, headers={"Authorization": f"Bearer {API_KEY}"}) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def payment_intents(self) -> list[dict[str, Any]]:
        """What the processor holds, asked of localstripe itself (not of our ledger)."""
        async with self.http.get(
            f"{self.localstripe.url}/v1/payment_intents",
            params={"limit": "100"},
            headers={"Authorization": f"Bearer {LOCALSTRIPE_KEY}"},
        ) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["data"]

    def texts_to(self, number: str = "+15555550100") -> list[str]:
        return [m.body for m in self.providers.sms.outbox if m.to == number]  # type: ignore[attr-defined]


@pytest_asyncio.fixture(loop_scope="session")
async def live(
    settings: Settings,
    providers: Providers,
    clock: FrozenClock,
    live_socket: socket.socket,
    localstripe: LocalStripe,
) -> AsyncIterator[LiveServer]:
    app = create_app(settings, providers, clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, live_socket).start()
        async with aiohttp.ClientSession(base_url=settings.public_base_url) as http:
            yield LiveServer(settings.public_base_url, app, providers, localstripe, http)
    finally:
        await runner.cleanup()


# --- a page in a fresh context ----------------------------------------------------------------


@dataclass
class Tab:
    """One browser tab at one viewport, with what it asked for and what it logged."""

    page: Page
    viewport: str
    shots_dir: Path
    requests: list[str] = field(default_factory=list)
    documents: set[str] = field(default_factory=set)  # the pages navigated to
    console: list[str] = field(default_factory=list)
    console_errors: list[tuple[str, str]] = field(default_factory=list)  # (text, source url)
    errors: list[str] = field(default_factory=list)
    overflow: list[str] = field(default_factory=list)
    _shots: int = 0

    @property
    def mobile(self) -> bool:
        return self.viewport == "phone"

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)
        if request.is_navigation_request():
            self.documents.add(request.url)

    def on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")
        if message.type == "error":
            self.console_errors.append((message.text, message.location.get("url", "")))

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(str(error))

    async def shot(self, step: str) -> Path:
        """Save a full-page screenshot as NN-step.png, and note any sideways overflow."""
        self._shots += 1
        path = self.shots_dir / f"{self._shots:02d}-{step}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        wide = await self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        if wide > 0:
            self.overflow.append(f"{path.name}: {wide}px wider than the viewport")
        return path

    async def press(self, target: Locator | str) -> None:
        """Tap on the phone, click on the desktop. A string names a button."""
        locator = (
            self.page.get_by_role("button", name=target, exact=True)
            if isinstance(target, str)
            else target
        )
        if self.mobile:
            await locator.tap()
        else:
            await locator.click()

    async def type_into(self, locator: Locator, text: str) -> None:
        """Key by key, as a person types (the fake Stripe.js reacts to each input event)."""
        if self.mobile:
            await locator.tap()
        await locator.press_sequentially(text)

    async def state(self) -> str | None:
        return await self.page.locator("#step-form input[name=state]").get_attribute("value")

    def foreign_requests(self, allowed_origins: set[str]) -> list[str]:
        def origin(url: str) -> str:
            parts = urlsplit(url)
            return f"{parts.scheme}://{parts.netloc}"

        return [
            u
            for u in self.requests
            if not u.startswith("data:") and origin(u) not in allowed_origins
        ]

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line]

    def unexpected_console_errors(self) -> list[tuple[str, str]]:
        """Console errors, less the "Failed to load resource" Chromium logs for a page the
        portal answered with a 4xx on purpose (a wrong code: 422, locked: 429)."""
        return [
            (text, url)
            for text, url in self.console_errors
            if not (text.startswith("Failed to load resource") and url in self.documents)
        ]

    def assert_clean(self, live: LiveServer) -> None:
        """Only the app and localstripe were asked for anything; no CSP violation, no script
        error, no missing asset, nothing wider than the screen."""
        assert self.requests, "no request recorded"
        assert self.foreign_requests({live.url, live.localstripe.url}) == []
        assert self.csp_violations() == []
        assert self.unexpected_console_errors() == []
        assert self.errors == []
        assert self.overflow == []


@pytest.fixture(params=sorted(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def tab(
    browser: Browser, live: LiveServer, viewport: str, request: pytest.FixtureRequest
) -> AsyncIterator[Tab]:
    shots_dir = SCREENSHOTS / re.sub(r"[^\w.-]+", "-", request.node.name).strip("-")
    shutil.rmtree(shots_dir, ignore_errors=True)
    shots_dir.mkdir(parents=True)
    context = await browser.new_context(base_url=live.url, locale="en-US", **VIEWPORTS[viewport])
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = await context.new_page()
        opened = Tab(page, viewport, shots_dir)
        page.on("request", opened.on_request)
        page.on("console", opened.on_console)
        page.on("pageerror", opened.on_page_error)
        failed_before = request.session.testsfailed
        yield opened
        if request.session.testsfailed > failed_before:  # the test failed: keep what it saw
            await page.screenshot(path=str(shots_dir / "99-failure.png"), full_page=True)
    finally:
        await context.close()
