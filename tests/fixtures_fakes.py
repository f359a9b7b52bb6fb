"""Pytest fixtures: local Twilio and SendGrid fakes, and a guard against the internet.

Load with ``pytest_plugins = ["tests.fixtures_fakes"]`` (until tests/conftest.py does).

- ``no_external_network``: while it is active, any connection or DNS look-up to a
  host outside the loopback range is refused and recorded, and the test fails at
  teardown. ``twilio_fake`` and ``sendgrid_fake`` turn it on.
- ``twilio_fake``: a running ``TwilioFake`` (``.base_url``, ``.account_sid``,
  ``.auth_token``, ``.requests``, ``.messages``, ``.opt_out(number)``, ``.fail_next()``).
- ``sendgrid_fake``: a running ``SendGridFake`` (``.base_url``, ``.api_key``,
  ``.requests``, ``.messages``, ``.fail_next()``).
- ``paypal_fake``: a running ``PayPalFake`` (``.base_url``, ``.client_id``, ``.decline``,
  ``.orders``, ``.captures``, ``.signed(body)`` for webhooks, ``.fail_next()``).
- ``paypal_gateway``: a real ``PayPalGateway`` (paypal-server-sdk) pointed at ``paypal_fake``.
- ``twilio_sms``: a real ``TwilioSms`` (the twilio SDK) pointed at ``twilio_fake``,
  closed after the test.
- ``sendgrid_email``: a real ``SendGridEmail`` (the sendgrid SDK) pointed at
  ``sendgrid_fake``.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fakes.paypal import PayPalFake
from tests.fakes.sendgrid_api import SendGridFake
from tests.fakes.twilio_api import DEFAULT_FROM, TwilioFake

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None:
        return True  # getaddrinfo(None, port): the local wildcard
    host = str(host).strip("[]").split("%", 1)[0]
    if host.lower() in _LOCAL_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


@dataclass
class NetworkGuard:
    """Records every attempt to leave the machine while a test runs."""

    blocked: list[str] = field(default_factory=list)

    def check(self, what: str, host: Any) -> None:
        if not _is_local_host(host):
            self.blocked.append(f"{what} {host}")
            raise OSError(errno.ENETUNREACH, f"blocked by the test network guard: {host}")


@pytest.fixture
def no_external_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetworkGuard]:
    guard = NetworkGuard()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect", address[0])
        return real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            guard.check("connect", address[0])
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            guard.blocked.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"blocked by the test network guard: {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield guard
    assert not guard.blocked, f"a test tried to reach the internet: {guard.blocked}"


@pytest.fixture
async def twilio_fake(
    no_external_network: NetworkGuard, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TwilioFake]:
    # The twilio SDK reads these; with them set it would rewrite the host.
    for name in ("TWILIO_EDGE", "TWILIO_REGION"):
        monkeypatch.delenv(name, raising=False)
    fake = TwilioFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def sendgrid_fake(no_external_network: NetworkGuard) -> AsyncIterator[SendGridFake]:
    fake = SendGridFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def twilio_sms(twilio_fake: TwilioFake) -> AsyncIterator[Any]:
    from bot.providers.sms import TwilioSms

    sender = TwilioSms(
        account_sid=twilio_fake.account_sid,
        auth_token=twilio_fake.auth_token,
        from_number=DEFAULT_FROM,
        api_base=twilio_fake.base_url,
        timeout=5.0,
    )
    try:
        yield sender
    finally:
        await sender.close()


@pytest.fixture
async def sendgrid_email(sendgrid_fake: SendGridFake) -> AsyncIterator[Any]:
    from bot.providers.email import SendGridEmail

    sender = SendGridEmail(
        api_key=sendgrid_fake.api_key,
        from_email="billing@northwind.example",
        from_name="Northwind Recovery",
        host=sendgrid_fake.base_url,
        timeout=5.0,
    )
    try:
        yield sender
    finally:
        await sender.close()


@pytest.fixture
async def paypal_fake(no_external_network: NetworkGuard) -> AsyncIterator[PayPalFake]:
    fake = PayPalFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def paypal_gateway(paypal_fake: PayPalFake) -> AsyncIterator[Any]:
    from bot.providers.paypal_gateway import PayPalGateway

    gateway = PayPalGateway(paypal_fake.client_id, paypal_fake.client_secret,
                            base_url=paypal_fake.base_url, timeout=5.0)
    try:
        yield gateway
    finally:
        await gateway.close()
