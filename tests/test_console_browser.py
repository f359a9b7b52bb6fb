"""The console in real Chromium (Playwright, Debian's chromium): two agents in two browser
contexts. A customer's SMS (a signed webhook post) appears live in both; agent A claims and B sees
it taken; A replies and the local Twilio fake receives the text; A hands back and the customer's
next message is answered by the bot.

With PAYBOT_TEST_BACKEND=services the server is `paybot serve --workers 2` on the run's
PostgreSQL and Redis (the two agents' live feeds may sit on different processes: Redis pub/sub
carries the events between them). On the embedded backend it is the app in this process, on
the in-process Redis. Either way texts leave through the real twilio SDK to a local fake.

Also: a screenshot of every console page at 1280x800 and 390x844 (test-artifacts/screenshots/
console/; with PAYBOT_DOCS_SCREENSHOTS=1 into docs/console/, where the README takes one).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pyotp
import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Browser, BrowserContext, Page, expect
from twilio.request_validator import RequestValidator

from bot import appkeys
from bot.app import create_app
from bot.clock import SystemClock
from bot.config.settings import Settings
from tests.conftest import BACKEND, twiml_messages
from tests.console_support import PASSWORD, add_staff
from tests.fakes.twilio_api import DEFAULT_ACCOUNT_SID, DEFAULT_FROM, TwilioFake
from tests.fixtures_browser import browser, chromium_path  # noqa: F401
from tests.seed import add_account

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROOT = Path(__file__).resolve().parents[1]
TWILIO_TOKEN = "console-test-twilio-token"
CUSTOMER = "+15555550100"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LIVE_WITHIN_MS = 3000  # "within a second" on a quiet machine; two shared cores under a suite


@dataclass
class ConsoleServer:
    url: str
    app: web.Application  # this process's app: the ledger the server writes (and seeding)
    twilio: TwilioFake
    http: aiohttp.ClientSession
    processes: int

    async def text(self, body: str, number: str = CUSTOMER) -> list[str]:
        path = "/webhooks/twilio/sms"
        params = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32,
                  "From": number, "To": DEFAULT_FROM, "Body": body, "NumMedia": "0"}
        signature = RequestValidator(TWILIO_TOKEN).compute_signature(self.url + path, params)
        async with self.http.post(path, data=params,
                                  headers={"X-Twilio-Signature": signature}) as response:
            text = await response.text()
            assert response.status == 200, (response.status, text[:300])
            return twiml_messages(text)

    def texts_to(self, number: str = CUSTOMER) -> list[str]:
        return [m["body"] for m in self.twilio.messages if m["to"] == number]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _serve_processes(settings: Settings, port: int, tmp: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYBOT_", "REDIS_",
                                                                     "TWILIO_", "STRIPE_"))}
    env.update(
        DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url or "",
        PUBLIC_BASE_URL=settings.public_base_url, SECRET_KEY=settings.secret_key,
        PAYBOT_DATA_DIR=str(tmp / "var"), PAYBOT_MIGRATE_ON_START="0",
        TWILIO_ACCOUNT_SID=DEFAULT_ACCOUNT_SID, TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_FROM_NUMBER=DEFAULT_FROM, TWILIO_API_BASE=settings.twilio_api_base or "",
    )
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "serve", "--workers", "2", "--port", str(port),
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    assert server.stdout is not None
    listening = 0
    while listening < 2:  # aiohttp prints "Running on" once per process
        line = await asyncio.wait_for(server.stdout.readline(), 60)
        assert line, "paybot serve ended before both processes listened"
        listening += b"Running on" in line
    return server


@pytest_asyncio.fixture(loop_scope="session")
async def console_server(settings: Settings, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ConsoleServer]:
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    twilio = await TwilioFake(auth_token=TWILIO_TOKEN).start()
    port = _free_port()
    settings = settings.replace(
        public_base_url=f"http://127.0.0.1:{port}", twilio_account_sid=DEFAULT_ACCOUNT_SID,
        twilio_auth_token=TWILIO_TOKEN, twilio_from_number=DEFAULT_FROM,
        twilio_api_base=twilio.base_url,
    )
    app = create_app(settings, None, SystemClock())  # the real twilio SDK, to the fake
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    server = None
    try:
        if BACKEND == "services":
            server = await _serve_processes(settings, port, tmp_path)
        else:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession(base_url=settings.public_base_url) as http:
            yield ConsoleServer(settings.public_base_url, app, twilio, http,
                                2 if server else 1)
    finally:
        if server is not None and server.returncode is None:
            server.terminate()
            await asyncio.wait_for(server.wait(), 60)
        await runner.cleanup()
        await twilio.close()


@pytest_asyncio.fixture(loop_scope="session")
async def contexts(browser: Browser, console_server: ConsoleServer,  # noqa: F811
                   ) -> AsyncIterator[list[BrowserContext]]:
    made: list[BrowserContext] = []

    async def new(size: str = "desktop") -> BrowserContext:
        context = await browser.new_context(base_url=console_server.url, locale="en-US",
                                            viewport=SIZES[size],
                                            is_mobile=size == "phone", has_touch=size == "phone")
        context.set_default_timeout(10_000)
        made.append(context)
        return context

    yield new  # type: ignore[misc]
    for context in made:
        await context.close()


async def sign_in(page: Page, email: str, code_secret: str | None = None) -> None:
    await page.goto("/agent/login")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    if code_secret is not None:
        await expect(page.locator("h1")).to_have_text("Enter your code")
        await page.get_by_label("6-digit code").fill(pyotp.TOTP(code_secret).now())
        await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("h1")).to_contain_text("Waiting for a person")
    await expect(page.locator("body[data-live=on]")).to_have_count(1)


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    return problems


async def test_two_agents_see_a_customer_live_one_claims_replies_and_hands_back(
    console_server: ConsoleServer, contexts
):  # type: ignore[no-untyped-def]
    live = console_server
    await add_account(live.app)
    await add_staff(live.app, "ana@paybot.test", "Ana")
    await add_staff(live.app, "ben@paybot.test", "Ben")
    ana, ben = await (await contexts()).new_page(), await (await contexts()).new_page()
    problems = watch(ana) + watch(ben)
    await sign_in(ana, "ana@paybot.test")
    await sign_in(ben, "ben@paybot.test")

    started = time.monotonic()
    await live.text("agent")
    for page in (ana, ben):
        row = page.locator('#rows tr[data-phone="+15555550100"]')
        await expect(row).to_contain_text("Maria", timeout=LIVE_WITHIN_MS)
        await expect(row).to_contain_text("asked for a person")
    assert (time.monotonic() - started) * 1000 < LIVE_WITHIN_MS

    await ben.locator('a[href="/agent/c/15555550100"]').click()
    await expect(ben.locator("#conv-status")).to_have_text("waiting for a person")
    await ana.locator('a[href="/agent/c/15555550100"]').click()
    await ana.get_by_role("button", name="Claim").click()
    await expect(ana.locator("#conv-status")).to_have_text("with Ana")
    # Ben's page is told, without a reload.
    await expect(ben.locator("#taken")).to_have_text("Ana owns this conversation.",
                                                     timeout=LIVE_WITHIN_MS)

    reply = "Hi Maria, this is Ana. Could a plan of $100 a month work for you?"
    await ana.get_by_label("Message to the customer").fill(reply)
    await expect(ana.locator("#reply-counter")).to_have_text(
        f"GSM-7, {len(reply)} characters, 1 segment of 2")
    await ana.get_by_role("button", name="Send", exact=True).click()
    await expect(ana.locator(".notice.ok")).to_have_text("Sent.")
    await expect(ana.locator("#transcript")).to_contain_text(reply)
    assert live.texts_to() == [reply]
    await expect(ben.locator("#transcript")).to_contain_text(reply, timeout=LIVE_WITHIN_MS)

    # The customer answers: both transcripts show it live; the bot stays quiet.
    assert await live.text("yes that works") == []
    await expect(ana.locator("#transcript")).to_contain_text("yes that works",
                                                             timeout=LIVE_WITHIN_MS)

    await ana.get_by_role("button", name="Resolve and hand back to the bot").click()
    await expect(ana.locator(".notice.ok")).to_contain_text("Handed back to the bot")
    assert live.texts_to()[-1] == \
        "You're back with the automated assistant. Reply MENU for options."
    (answer,) = await live.text("balance")
    assert answer.startswith("Your balance"), answer
    assert problems == []


@dataclass
class Camera:
    """Numbered screenshots of one viewport; each page checked for sideways overflow."""

    page: Page
    out: Path
    size: str
    taken: int = 0

    async def __call__(self, name: str) -> None:
        self.taken += 1
        await self.page.screenshot(path=str(self.out / f"{self.size}-{self.taken:02d}-{name}.png"))
        wide = await self.page.evaluate("document.documentElement.scrollWidth - "
                                        "document.documentElement.clientWidth")
        assert wide <= 0, f"{name} at {self.size}: {wide}px wider than the screen"


SHOTS = ("login", "setup", "code", "waiting", "conversation", "mine", "live", "resolved",
         "search", "supervisor", "forbidden")


@pytest.mark.skipif(BACKEND == "services", reason="pictures: once, on the embedded pass")
async def test_screenshots_of_every_console_page(console_server: ConsoleServer, contexts):  # type: ignore[no-untyped-def]
    live = console_server
    out = (ROOT / "docs" / "console" if os.environ.get("PAYBOT_DOCS_SCREENSHOTS")
           else ROOT / "test-artifacts" / "screenshots" / "console")
    out.mkdir(parents=True, exist_ok=True)
    await add_account(live.app)
    await add_staff(live.app, "ana@paybot.test", "Ana")
    secret = pyotp.random_base32()
    await add_staff(live.app, "sam@paybot.test", "Sam", "supervisor", totp_secret=secret)
    from bot.staff import accounts

    async with live.app[appkeys.DATABASE].session() as session:
        added = await accounts.add(session, "sue@paybot.test", "Sue", "supervisor",
                                   at=SystemClock().now(), by="test")
        await session.commit()
    await add_account(live.app, ref="ACC-1002", phone="+15555550177", first_name="James",
                      email="james@example.com")
    await live.text("agent")
    await live.text("agent", "+15555550177")
    for size in SIZES:
        context = await contexts(size)
        page = await context.new_page()
        problems = watch(page)
        take = Camera(page, out, size)

        await page.goto("/agent/login")
        await take("login")
        await page.goto(accounts.setup_path(added.setup_token or ""))
        await expect(page.locator("h1")).to_have_text("Set up your account")
        await take("setup")
        await sign_in(page, "ana@paybot.test")
        await take("waiting")
        await page.goto("/agent/c/15555550100")
        if size == "desktop":  # claimed once, Ana's from then on
            await page.get_by_role("button", name="Claim").click()
        await expect(page.locator("#conv-status")).to_have_text("with Ana")
        await page.get_by_label("Message to the customer").fill(
            "Hi Maria, this is Ana from Northwind. How can I help?")
        await take("conversation")
        for view in ("mine", "live", "resolved"):
            await page.goto(f"/agent/inbox/{view}")
            await take(view)
        await page.goto("/agent/inbox/search?q=maria")
        await take("search")
        await page.goto("/agent/supervisor/")
        await take("forbidden")
        await page.get_by_role("button", name="Sign out").click()
        await page.goto("/agent/login")
        await page.get_by_label("Email").fill("sam@paybot.test")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()
        await take("code")
        await page.get_by_label("6-digit code").fill(
            pyotp.TOTP(secret).at(time.time() + (30 if size == "phone" else 0)))
        await page.get_by_role("button", name="Continue").click()
        await page.goto("/agent/supervisor/")
        await take("supervisor")
        await context.close()
        assert [p for p in problems if not re.match("Failed to load resource", p)] == []
