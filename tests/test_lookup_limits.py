"""Issue 12, findings 4 to 6: how many codes an account and a destination may be sent, how a
failing client is slowed down (and no one else), that nothing tells a real account from an
unknown one, and that SSN + date of birth count only where no code can be sent.

The web side is driven over HTTP (the look-up pages), the SMS side through the signed Twilio
webhook. Each web client comes from its own address, through X-Forwarded-For: here the test
client's own address (127.0.0.1) is the trusted proxy (tests/test_client_address.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from ipaddress import ip_network

import pytest
from sqlalchemy import select, update

from bot import appkeys
from bot.config.settings import Settings
from bot.ledger.models import Account, WebSession
from bot.providers import Providers
from bot.providers.email import SandboxEmail
from bot.providers.payments import PaymentGateway
from bot.providers.sms import SandboxSms, SentSms
from tests.portal_visitor import Visitor
from tests.seed import add_account

MARIA = "+15555550100"
CAPPED = "We cannot send another code right now"


def codes_to(providers: Providers, number: str) -> list[str]:
    return [
        re.search(r"code is (\d{6})", m.body).group(1)  # type: ignore[union-attr]
        for m in providers.sms.outbox
        if m.to == number and "code is" in m.body
    ]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The test client connects from 127.0.0.1: here it stands for the load balancer.
    return settings.replace(trusted_proxies=(ip_network("127.0.0.0/8"),))


# ---------------------------------------------------------------- finding 4: code caps


async def test_an_account_gets_at_most_five_codes_an_hour_and_ten_a_day(
    app, visitor, providers, clock
) -> None:
    await add_account(app)
    for n in range(5):
        await visitor(f"198.51.100.{n}").lookup("ACC-1001")
    assert len(codes_to(providers, MARIA)) == 5
    sixth = visitor("198.51.100.99")
    await sixth.lookup("ACC-1001")
    assert sixth.status == 429
    assert CAPPED in sixth.text and "at most 5 codes an hour and 10 a day" in sixth.text
    assert 'name="code"' not in sixth.html
    assert len(codes_to(providers, MARIA)) == 5
    clock.advance(timedelta(hours=1, seconds=1))
    for n in range(5):
        await visitor(f"198.51.101.{n}").lookup("ACC-1001")
    assert len(codes_to(providers, MARIA)) == 10
    clock.advance(timedelta(hours=2))
    late = visitor("198.51.102.1")
    await late.lookup("ACC-1001")
    assert late.status == 429 and CAPPED in late.text
    assert len(codes_to(providers, MARIA)) == 10
    clock.advance(timedelta(hours=22))
    await visitor("198.51.102.2").lookup("ACC-1001")
    assert len(codes_to(providers, MARIA)) == 11


async def test_a_phone_number_gets_at_most_five_codes_an_hour_whatever_the_account(
    app, visitor, providers
) -> None:
    await add_account(app, ref="ACC-1001")
    await add_account(app, ref="ACC-2002", email="other@example.com")  # the same phone
    for n in range(3):
        await visitor(f"198.51.100.{n}").lookup("ACC-1001")
    for n in range(2):
        await visitor(f"198.51.101.{n}").lookup("ACC-2002")
    capped = visitor("198.51.102.1")
    await capped.lookup("ACC-2002")
    assert capped.status == 429 and CAPPED in capped.text
    assert len(codes_to(providers, MARIA)) == 5


async def test_codes_by_text_are_capped_and_say_so(app, phone, providers) -> None:
    await add_account(app)
    answers = []
    for n in range(6):
        stranger = phone(f"+1555555900{n}")
        await stranger.send("hello")
        answers.append((await stranger.send("ACC-1001"))[0])
    assert len(codes_to(providers, MARIA)) == 5
    assert answers[4].startswith("If that account ID is on file, we have sent a code")
    assert answers[5].startswith(CAPPED)
    assert "at most 5 codes an hour and 10 a day" in answers[5]


async def test_a_number_may_look_up_ten_account_ids_in_fifteen_minutes(app, phone) -> None:
    stranger = phone("+15555559999")
    await stranger.send("hello")
    for n in range(10):
        (asked,) = await stranger.send(f"NOPE-{n}")
        assert asked.startswith("If that account ID is on file")
        for guess in ("000000", "000001", "000002"):
            await stranger.send(guess)
    assert await stranger.send("NOPE-10") == [
        "Too many look-ups from this number. Please try again in 15 minutes, or reply AGENT "
        "to reach a person."
    ]


async def test_concurrent_lookups_send_no_more_than_the_cap(app, visitor, providers) -> None:
    await add_account(app)
    visitors = [visitor(f"198.51.100.{n}") for n in range(8)]
    for one in visitors:
        await one.get("/portal/")
    await asyncio.gather(
        *(v.post("/portal/lookup", {"identifier": "ACC-1001"}) for v in visitors)
    )
    await app[appkeys.ENGINE].settled()
    assert len(codes_to(providers, MARIA)) == 5
    assert sorted(v.status for v in visitors) == [200] * 5 + [429] * 3


# ---------------------------------------------------------------- finding 6: back-off, no lockout


async def test_wrong_codes_from_other_addresses_do_not_lock_the_customer_out(
    app, visitor, providers
) -> None:
    await add_account(app)
    for n in range(3):
        attacker = visitor(f"203.0.113.{n}")
        await attacker.lookup("ACC-1001")
        for _ in range(3):
            await attacker.verify(code="000000")
    maria = visitor("198.51.100.20")
    await maria.lookup("ACC-1001")
    assert maria.status == 200
    await maria.verify(code=codes_to(providers, MARIA)[-1])
    assert maria.status == 200 and "$1,250.00" in maria.text


async def test_a_failing_web_client_waits_longer_and_longer(app, visitor, providers, clock) -> None:
    await add_account(app)
    attacker = visitor("203.0.113.9")
    await attacker.lookup("ACC-1001")
    await attacker.verify(code="000000")
    assert attacker.status == 422 and "That did not match. 2 tries left." in attacker.text
    await attacker.verify(code="000001")
    assert "That did not match. 1 try left." in attacker.text
    await attacker.verify(code="000002")
    assert attacker.status == 422
    assert "that code no longer works" in attacker.text and "1 minute" in attacker.text
    # Even the right code is not tried while the client waits.
    await attacker.verify(code=codes_to(providers, MARIA)[-1])
    assert attacker.status == 429 and "please wait 1 minute" in attacker.text
    await attacker.lookup("ACC-1001")
    assert attacker.status == 429 and "please wait 1 minute" in attacker.text
    assert len(codes_to(providers, MARIA)) == 1  # no code while waiting
    clock.advance(timedelta(minutes=1))
    await attacker.lookup("ACC-1001")
    await attacker.verify(code="000003")
    assert "please wait 2 minutes" in attacker.text
    clock.advance(timedelta(minutes=2))
    await attacker.verify(code="000004")
    assert "please wait 4 minutes" in attacker.text
    clock.advance(timedelta(minutes=3))
    await attacker.verify(code=codes_to(providers, MARIA)[-1])
    assert attacker.status == 429 and "please wait 1 minute" in attacker.text
    clock.advance(timedelta(minutes=1))
    await attacker.verify(code=codes_to(providers, MARIA)[-1])
    assert "$1,250.00" in attacker.text  # a right answer after the wait still works


def test_the_wait_doubles_and_never_exceeds_an_hour() -> None:
    from bot.accounts.second_factor import backoff

    waits = [backoff(n) for n in range(1, 12)]
    assert waits[:2] == [timedelta(0)] * 2
    assert waits[2:9] == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60)]
    assert set(waits[9:]) == {timedelta(hours=1)}


async def test_wrong_codes_from_other_numbers_do_not_lock_the_customer_out(
    app, phone, providers
) -> None:
    await add_account(app)
    for n in range(3):
        stranger = phone(f"+1555555900{n}")
        await stranger.send("hello")
        await stranger.send("ACC-1001")
        for _ in range(3):
            await stranger.send("000000")
    maria_new_phone = phone("+15555558888")
    await maria_new_phone.send("hello")
    (sent,) = await maria_new_phone.send("ACC-1001")
    assert sent.startswith("If that account ID is on file, we have sent a code")
    replies = await maria_new_phone.send(codes_to(providers, MARIA)[-1])
    assert "Thanks Maria, you are verified." in "\n".join(replies)


async def test_a_failing_number_waits_longer_and_longer(app, phone, providers, clock) -> None:
    await add_account(app)
    stranger = phone("+15555559999")
    await stranger.send("hello")
    await stranger.send("ACC-1001")
    assert await stranger.send("000000") == ["That did not match. 2 tries left."]
    assert await stranger.send("000001") == ["That did not match. 1 try left."]
    (spent,) = await stranger.send("000002")
    assert "that code no longer works" in spent and "1 minute" in spent
    (waiting,) = await stranger.send("ACC-1001")
    assert "please wait 1 minute" in waiting
    clock.advance(timedelta(minutes=1))
    (sent,) = await stranger.send("ACC-1001")
    assert sent.startswith("If that account ID is on file")
    (failed,) = await stranger.send("000003")
    assert "please wait 2 minutes" in failed
    (still,) = await stranger.send(codes_to(providers, MARIA)[-1])
    assert "please wait 2 minutes" in still  # not even tried
    clock.advance(timedelta(minutes=2))
    replies = await stranger.send(codes_to(providers, MARIA)[-1])
    assert "Thanks Maria, you are verified." in "\n".join(replies)


# ---------------------------------------------------------------- finding 6: no enumeration


async def _web_script(browser: Visitor, identifier: str, clock) -> Visitor:  # type: ignore[no-untyped-def]
    await browser.lookup(identifier)
    for guess in ("000000", "000001", "000002", "000003"):
        await browser.verify(code=guess)
    await browser.verify(ssn_last4="6789", dob="1985-04-12")
    await browser.lookup(identifier)
    clock.advance(timedelta(minutes=1))
    await browser.lookup(identifier)
    await browser.verify(code="000004")
    for _ in range(5):
        clock.advance(timedelta(hours=1))
        await browser.lookup(identifier)
    return browser


async def test_a_real_and_an_unknown_account_look_up_the_same_whole(
    app, visitor, providers, clock
) -> None:
    await add_account(app, ssn="123-45-6789", dob="1985-04-12")
    # Someone else asked for codes already: the real account is near its cap.
    for n in range(4):
        await visitor(f"198.51.100.{n}").lookup("ACC-1001")
    for n in range(4):
        await visitor(f"198.51.101.{n}").lookup("NOPE-404")
    start = clock.now()
    real = await _web_script(visitor("203.0.113.1"), "ACC-1001", clock)
    clock.set(start)
    unknown = await _web_script(visitor("203.0.113.2"), "NOPE-404", clock)
    assert real.transcript == unknown.transcript
    statuses = [step[2] for step in real.transcript]
    assert 422 in statuses and 429 in statuses  # failures, waits and the cap were all seen


async def test_a_real_and_an_unknown_account_id_get_the_same_texts(
    app, phone, providers, clock
) -> None:
    await add_account_without_contacts(app, ssn="123-45-6789", dob="1985-04-12")
    await add_account(app, ref="ACC-2002", phone=MARIA)
    script = ["hello", "{id}", "000000", "1234 01/01/1990", "000002", "{id}"]

    async def run(number: str, identifier: str) -> list[list[str]]:
        stranger = phone(number)
        out = []
        for text in script:
            out.append(await stranger.send(text.format(id=identifier)))
        clock.advance(timedelta(minutes=1))
        out.append(await stranger.send(identifier))
        return out

    start = clock.now()
    unknown = await run("+15555559001", "NOPE-404")
    clock.set(start)
    knowledge_only = await run("+15555559002", "ACC-1001")
    clock.set(start)
    with_phone = await run("+15555559003", "ACC-2002")
    assert unknown == knowledge_only == with_phone


# ---------------------------------------------------------------- codes go out after the answer


class HeldSms(SandboxSms):
    """An SMS provider that answers only when the test lets it (a slow Twilio)."""

    def __init__(self) -> None:
        super().__init__()
        self.may_answer = asyncio.Event()

    async def send(self, **message) -> SentSms:  # type: ignore[no-untyped-def, override]
        await self.may_answer.wait()
        return await super().send(**message)


class TestCodesAreSentAfterTheAnswer:
    @pytest.fixture
    async def providers(
        self, settings: Settings, gateway: PaymentGateway
    ) -> AsyncIterator[Providers]:
        providers = Providers(
            sms=HeldSms(), email=SandboxEmail(settings.outbox_dir / "email"), payments=gateway
        )
        yield providers
        await providers.close()

    async def test_on_the_web(self, app, visitor, providers) -> None:
        await add_account(app)
        browser = visitor("198.51.100.1")
        await browser.get("/portal/")
        response = await asyncio.wait_for(
            browser.http.post(
                "/portal/lookup",
                data={"csrf_token": browser.csrf, "identifier": "ACC-1001"},
                headers={"X-Forwarded-For": "198.51.100.1"},
                allow_redirects=False,
            ),
            timeout=30,
        )
        assert response.status == 303  # answered while the SMS provider has not
        assert providers.sms.outbox == []
        providers.sms.may_answer.set()
        await app[appkeys.ENGINE].settled()
        assert len(codes_to(providers, MARIA)) == 1

    async def test_by_text(self, app, phone, providers) -> None:
        await add_account(app)
        stranger = phone("+15555559999")
        stranger.in_process = False  # answered without waiting for the code: that is the point
        await stranger.send("hello")
        (sent,) = await asyncio.wait_for(stranger.send("ACC-1001"), timeout=30)
        assert sent.startswith("If that account ID is on file")
        assert providers.sms.outbox == []
        providers.sms.may_answer.set()
        await app[appkeys.ENGINE].settled()
        assert len(codes_to(providers, MARIA)) == 1


# ---------------------------------------------------------------- finding 5: SSN + DOB


async def test_ssn_and_birth_date_do_not_open_the_portal_when_a_contact_is_on_file(
    app, visitor
) -> None:
    await add_account(app, ssn="123-45-6789", dob="1985-04-12")
    browser = visitor("198.51.100.1")
    await browser.lookup("123-45-6789")
    await browser.verify(ssn_last4="6789", dob="1985-04-12")
    assert browser.status == 422 and "That did not match." in browser.text
    async with app[appkeys.DATABASE].session() as session:
        opened = await session.scalar(
            select(WebSession).where(WebSession.account_id.is_not(None))
        )
    assert opened is None


async def add_account_without_contacts(app, **fields):  # type: ignore[no-untyped-def]
    """An account whose contacts were removed (an import needs one, a later upsert may not)."""
    account = await add_account(app, phone=None, **fields)
    async with app[appkeys.DATABASE].session() as session:
        await session.execute(update(Account).where(Account.id == account.id).values(email=None))
        await session.commit()
    return account


async def test_ssn_and_birth_date_open_the_portal_when_no_contact_is_on_file(
    app, visitor, providers
) -> None:
    await add_account_without_contacts(app, ssn="123-45-6789", dob="1985-04-12")
    browser = visitor("198.51.100.1")
    await browser.lookup("123-45-6789")
    assert providers.sms.outbox == [] and providers.email.outbox == []
    await browser.verify(ssn_last4="6789", dob="1985-04-12")
    assert browser.status == 200 and "$1,250.00" in browser.text


async def test_ssn_and_birth_date_do_not_verify_a_number_when_a_contact_is_on_file(
    app, phone
) -> None:
    await add_account(app, phone=None, ssn="123-45-6789", dob="1985-04-12")
    stranger = phone("+15555559999")
    await stranger.send("hello")
    await stranger.send("ACC-1001")
    assert await stranger.send("6789 04/12/1985") == ["That did not match. 2 tries left."]
