"""Shared fixtures. The suite runs on the embedded defaults (SQLite + in-process Redis) or, with
PAYBOT_TEST_BACKEND=services, on the real PostgreSQL and Redis named by TEST_DATABASE_URL and
TEST_REDIS_URL; in that mode an unreachable service fails the run, it never skips."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from bot import appkeys
from bot.app import create_app
from bot.clock import FrozenClock
from bot.config.settings import Settings
from bot.ledger.db import Database
from bot.ledger.models import Base
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.payments import PaymentGateway
from bot.providers.sandbox_gateway import SandboxGateway
from bot.providers.sms import SandboxSms

pytest_plugins = ["tests.fixtures_fakes", "tests.fixtures_stripe", "tests.portal_visitor"]

BACKEND = os.environ.get("PAYBOT_TEST_BACKEND", "embedded")
PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
AUTH_TOKEN = "test-twilio-auth-token"
PUBLIC_BASE_URL = "https://paybot.test"
API_KEY = "test-api-key"
# Wednesday 2026-11-25, 10:00 in New York: the corpus's reference time.
START = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def pytest_report_header(config: pytest.Config) -> str:
    if BACKEND == "services":
        redis_db = REDIS_URL or "a database of its own"
        return f"paybot backend: services (PostgreSQL {PG_URL.split('@')[-1]}, Redis {redis_db})"
    return "paybot backend: embedded (SQLite file + in-process Redis)"


@pytest.fixture(autouse=True)
def _no_internet(no_external_network: Any) -> Any:
    """Every test fails on a real network call: only loopback peers are allowed."""
    return no_external_network


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrate once; each test gets a copy of the file."""
    path = tmp_path_factory.mktemp("schema") / "template.sqlite3"

    async def migrate() -> None:
        database = Database(f"sqlite:///{path}")
        await database.migrate()
        await database.close()

    asyncio.run(migrate())
    return path


@pytest.fixture(scope="session")
def migrated_postgres() -> Iterator[str]:
    """A database of this test run's own (several runs may share the server), migrated once."""
    name = f"paybot_test_{os.getpid()}"
    admin_url = PG_URL
    run_url = PG_URL.rsplit("/", 1)[0] + f"/{name}"

    async def admin(statement: str) -> None:
        database = Database(admin_url)
        try:
            async with database.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(statement))
        finally:
            await database.close()

    async def create() -> None:
        await admin(f'DROP DATABASE IF EXISTS "{name}"')
        await admin(f'CREATE DATABASE "{name}"')
        database = Database(run_url)
        try:
            await database.migrate()
        finally:
            await database.close()

    try:
        asyncio.run(create())
    except OSError as exc:
        pytest.fail(f"PostgreSQL at {PG_URL} cannot be reached: {exc}", pytrace=False)
    yield run_url
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if BACKEND == "services":
        url = request.getfixturevalue("migrated_postgres")
        tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))

        async def truncate() -> None:
            database = Database(url)
            async with database.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            await database.close()

        asyncio.run(truncate())
        yield url
    else:
        path = tmp_path / "paybot.sqlite3"
        shutil.copy(request.getfixturevalue("migrated_sqlite"), path)
        yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def redis_test_url() -> Iterator[str]:
    """A Redis database of this run's own, so test runs side by side never flush each other's
    keys: TEST_REDIS_URL when given, else the first of databases 1-15 that no live run holds
    (the claim lives in database 0 and lapses if a run dies without letting go)."""
    import redis

    if REDIS_URL:
        yield REDIS_URL
        return
    claims = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        held = next(
            (
                n
                for n in range(1, 16)
                if claims.set(f"paybot-test-run:db{n}", os.getpid(), nx=True, ex=3 * 3600)
            ),
            None,
        )
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at 127.0.0.1:6379 cannot be reached: {exc}", pytrace=False)
    if held is None:
        pytest.fail("every Redis test database (1-15) is held by another test run", pytrace=False)
    try:
        yield f"redis://127.0.0.1:6379/{held}"
    finally:
        claims.delete(f"paybot-test-run:db{held}")
        claims.close()


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if BACKEND != "services":
        yield None
        return
    import redis

    url = request.getfixturevalue("redis_test_url")
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {url} cannot be reached: {exc}", pytrace=False)
    finally:
        client.close()
    yield url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def settings(database_url: str, redis_url: str | None, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        public_base_url=PUBLIC_BASE_URL,
        secret_key="test-secret-key",
        data_dir=tmp_path / "var",
        api_key=API_KEY,
        twilio_auth_token=AUTH_TOKEN,
        migrate_on_start=False,
    )


@pytest.fixture
def gateway() -> PaymentGateway:
    """The sandbox by default; tests that need the real SDK use `stripe_gateway` (localstripe)."""
    return SandboxGateway()


@pytest.fixture
async def providers(settings: Settings, gateway: PaymentGateway) -> AsyncIterator[Providers]:
    providers = Providers(
        sms=SandboxSms(),
        email=SandboxEmail(settings.outbox_dir / "email"),
        payments=gateway,
    )
    yield providers
    await providers.close()


@dataclass
class SmsPhone:
    """A customer's phone talking to PayBot through the real, signed Twilio webhook."""

    client: TestClient
    number: str
    sent: list[str] = field(default_factory=list)
    in_process: bool = True  # the app runs in this process (not a `paybot serve` of its own)
    _counter: int = 0

    async def send(self, body: str, *, sid: str | None = None) -> list[str]:
        response = await self.post(body, sid=sid)
        assert response[0] == 200, response
        return response[1]

    async def post(
        self, body: str, *, sid: str | None = None, token: str = AUTH_TOKEN
    ) -> tuple[int, list[str]]:
        self._counter += 1
        params = {
            "MessageSid": sid or "SM" + uuid.uuid4().hex,
            "AccountSid": "AC" + "0" * 32,
            "From": self.number,
            "To": "+15005550006",
            "Body": body,
            "NumMedia": "0",
        }
        response = await signed_post(self.client, "/webhooks/twilio/sms", params, token=token)
        text_body = await response.text()
        if self.in_process:
            # The webhook answers before the turn's emails go out: a test reads them once sent.
            await self.client.app[appkeys.ENGINE].settled()
        if response.status != 200:
            return response.status, [text_body]
        self.sent.append(body)
        return 200, twiml_messages(text_body)


async def signed_post(
    client: TestClient, path: str, params: dict[str, str], *, token: str = AUTH_TOKEN
) -> Any:
    signature = RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, params)
    return await client.post(
        path,
        data=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def twiml_messages(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    return [m.text or "" for m in root.findall("Message")]


@pytest.fixture
async def app(settings: Settings, providers: Providers, clock: FrozenClock):  # type: ignore[no-untyped-def]
    return create_app(settings, providers, clock)


@pytest.fixture
async def client(app, aiohttp_client, aiohttp_server) -> TestClient:  # type: ignore[no-untyped-def]
    server = await aiohttp_server(app)
    # PUBLIC_BASE_URL is https, so cookies are Secure: the test server's plain-HTTP origin is
    # treated as the secure origin it stands in for.
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    return await aiohttp_client(server, cookie_jar=jar)


@pytest.fixture
def phone(client: TestClient):  # type: ignore[no-untyped-def]
    def make(number: str = "+15555550100") -> SmsPhone:
        return SmsPhone(client=client, number=number)

    return make
