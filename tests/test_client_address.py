"""Issue 12, finding 4: the client's address, for everything that records or limits by address.

X-Forwarded-For is believed only from a proxy named in PAYBOT_TRUSTED_PROXIES, and then only its
rightmost hop that is not a trusted proxy; the test client connects from 127.0.0.1.
"""

from __future__ import annotations

import re
from ipaddress import ip_network

import pytest
from sqlalchemy import select

from bot import appkeys
from bot.config.settings import ConfigError, Settings
from bot.ledger.models import Agreement, AuditEvent, WebSession
from tests.seed import add_account


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The test client connects from 127.0.0.1: here it stands for the load balancer, and
    # 10.0.0.0/8 for the proxies behind it.
    return settings.replace(trusted_proxies=(ip_network("127.0.0.0/8"), ip_network("10.0.0.0/8")))


def test_trusted_proxies_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"PAYBOT_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32,192.0.2.7"})
    assert settings.trusted_proxies == (
        ip_network("10.0.0.0/8"),
        ip_network("2001:db8::/32"),
        ip_network("192.0.2.7/32"),
    )
    assert Settings.from_env({}).trusted_proxies == ()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "10.0.0.1/8", "proxy.internal", "10.0.0.0/8,,"])
def test_an_invalid_trusted_proxy_is_a_startup_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="PAYBOT_TRUSTED_PROXIES"):
        Settings.from_env({"PAYBOT_TRUSTED_PROXIES": value})


class TestWithoutATrustedProxy:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.replace(trusted_proxies=())

    async def test_forwarded_for_is_not_believed(self, app, visitor) -> None:
        allowed = 0
        for n in range(16):
            browser = visitor(f"198.51.100.{n}")
            await browser.lookup(f"NOPE-{n}")
            allowed += browser.status != 429
        assert allowed == 10  # invented addresses do not reset the per-address look-up limit
        async with app[appkeys.DATABASE].session() as session:
            addresses = set(await session.scalars(select(WebSession.ip_address)))
        assert addresses == {"127.0.0.1"}


async def test_through_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop(
    app, visitor
) -> None:
    for n in range(10):
        # Whatever the client writes to the left of its own address is not believed.
        await visitor(f"203.0.113.{n}, 198.51.100.7, 127.0.0.5").lookup(f"NOPE-{n}")
    limited = visitor("6.6.6.6, 198.51.100.7")
    await limited.lookup("NOPE-10")
    assert limited.status == 429 and "Too many look-ups" in limited.text
    other = visitor("198.51.100.8")
    await other.lookup("NOPE-11")
    assert other.status == 200
    async with app[appkeys.DATABASE].session() as session:
        addresses = set(await session.scalars(select(WebSession.ip_address)))
        audited = [
            event.detail["ip"]
            for event in await session.scalars(
                select(AuditEvent).where(AuditEvent.kind == "portal_lookup")
            )
        ]
    assert addresses == {"198.51.100.7", "198.51.100.8"}
    assert audited == ["198.51.100.7"] * 10 + ["198.51.100.8"]




async def test_a_signed_agreement_keeps_the_client_address_not_the_proxy(
    app, visitor, phone
) -> None:
    await add_account(app)
    (menu,) = await phone().send("hi")
    browser = visitor("10.9.9.9, 198.51.100.50, 10.1.2.3")  # client, then two of our proxies
    await browser.get(menu.split("https://paybot.test", 1)[1].split()[0])
    for fields in (
        {"action": "start"},
        {"action": "continue"},
        {"action": "continue", "amount": "75.50"},
        {"action": "continue", "choice": "1"},
        {"action": "now"},
        {"action": "pay", "consent": "yes"},
    ):
        state = re.search(r'name="state" value="([^"]+)"', browser.html)
        assert state, browser.text[:300]
        await browser.post("/portal/pay", {"state": state.group(1), **fields})
    assert "Thank you" in browser.text
    async with app[appkeys.DATABASE].session() as session:
        agreement = await session.scalar(select(Agreement))
    assert agreement is not None and agreement.ip_address == "198.51.100.50"


@pytest.mark.parametrize(
    ("forwarded", "client_address"),
    [
        (["[2001:db8::7]:443"], "2001:db8::7"),
        (["198.51.100.7:5000"], "198.51.100.7"),
        (["::ffff:198.51.100.7"], "198.51.100.7"),
        (["6.6.6.6", "198.51.100.7, 127.0.0.9"], "198.51.100.7"),  # two headers, in order
        (["198.51.100.7, not-an-address, 127.0.0.9"], "127.0.0.9"),  # the chain breaks there
        (["127.0.0.3, 127.0.0.9"], "127.0.0.3"),  # all trusted: the farthest one
    ],
)
async def test_forwarded_for_forms(app, client, forwarded: list[str], client_address: str) -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    response = await client.get("/portal/", headers=headers)
    assert response.status == 200
    # A visit stores no session: the look-up starts one, with the client's address.
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', await response.text())
    assert csrf
    response = await client.post(
        "/portal/lookup", data={"csrf_token": csrf.group(1), "identifier": "NOPE-1"},
        headers=headers,
    )
    assert response.status == 200
    async with app[appkeys.DATABASE].session() as session:
        addresses = list(await session.scalars(select(WebSession.ip_address)))
    assert addresses == [client_address]
