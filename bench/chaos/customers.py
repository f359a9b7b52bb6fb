"""The chaos run's simulated customers: each one, in a task of its own, texts PayBot as a person
would (pay now, schedule a payment, pay extra on a plan, sign a plan offer by reply, BALANCE,
LINK, HELP, misreads) and sometimes opens the link from a text and pays on the web.

Texts reach a live web process as Twilio sends them: signed (X-Twilio-Signature over
PUBLIC_BASE_URL + path), and sent again with the same MessageSid and body when the webhook fails
(connection error, 5xx) or takes longer than TWILIO_TIMEOUT_SECONDS, after a short backoff, to
whichever process is up. Every attempt is recorded, so the report can compute latency during
faults and the invariants can compare what retries were answered.

Imports aiohttp, bench.chaos.stage and .seed, and bench.sms_load's TwiML reader; never bot."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp

from bench.chaos.seed import Customer, InstallmentCalendar
from bench.chaos.stage import (
    PUBLIC_BASE_URL,
    SMS_PATH,
    TWILIO_TIMEOUT_SECONDS,
    Stage,
    signed_sms,
)
from bench.sms_load import twiml_texts

# Twilio tries a failed webhook again a few times, after a short and growing pause.
RETRY_BACKOFF = (1.0, 2.0, 4.0, 6.0, 8.0)
# Seconds a person takes before starting over after an unexpected reply (or none).
RECOVERY_PAUSE = (2.0, 8.0)
# Replies that say the turn did not go as the customer meant: a person starts over.
TROUBLE = ("something went wrong", "Sorry, I did not understand", "having trouble")
LINK = re.compile(re.escape(PUBLIC_BASE_URL) + r"(/p/[A-Za-z0-9_\-]+)")
MISREADS = ("what?", "ok thanks", "\U0001f642", "asdf", "who is this", "pay pay", "$$$")


@dataclass
class Attempt:
    started: float  # time.time()
    seconds: float
    status: int  # HTTP status; 0: no answer (connection refused or cut, timeout, no process)
    error: str | None
    texts: list[str] | None  # the TwiML's messages, of a 200


@dataclass
class MessageRecord:
    sid: str
    phone: str
    body: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def answer(self) -> list[str] | None:
        """What the customer read: the first attempt answered 200 (Twilio delivers that)."""
        for attempt in self.attempts:
            if attempt.status == 200:
                return attempt.texts
        return None


@dataclass
class LoadStats:
    messages: int = 0
    attempts: int = 0
    retries: int = 0
    unanswered: int = 0  # every attempt failed: Twilio gave up
    web_visits: int = 0
    web_payments: int = 0
    web_lost_sessions: int = 0  # the link opened again
    sms_payments_asked: int = 0  # AGREE/YES sent to a payment confirmation
    sms_payments_done: int = 0
    plans_signed: int = 0
    extras: int = 0
    installments_brought_forward: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    records: list[MessageRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The balance each account was seeded with, by account_ref, for the checks (not a
        # field: the report's table lists the fields).
        self.owed: dict[str, int] = {}


class Twilio:
    """Twilio's side of inbound SMS: builds, signs, sends and re-sends each message."""

    def __init__(self, stage: Stage, http: aiohttp.ClientSession, stats: LoadStats) -> None:
        self.stage = stage
        self.http = http
        self.stats = stats
        self.tag = secrets.token_hex(4)
        self.counter = itertools.count(1)

    def build(self, phone: str, body: str) -> tuple[str, bytes, dict[str, str]]:
        sid = f"SM{self.tag}{next(self.counter):024d}"
        form, headers = signed_sms(phone, body, sid)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return sid, urlencode(form).encode(), headers

    async def send(self, phone: str, body: str) -> list[str] | None:
        """The texts the customer reads back, or None when Twilio gave up."""
        sid, data, headers = self.build(phone, body)
        record = MessageRecord(sid, phone, body)
        self.stats.records.append(record)
        self.stats.messages += 1
        for number in range(len(RETRY_BACKOFF) + 1):
            if number:
                self.stats.retries += 1
                await asyncio.sleep(RETRY_BACKOFF[number - 1])
            attempt = await self._attempt(data, headers)
            record.attempts.append(attempt)
            self.stats.attempts += 1
            if attempt.status == 200:
                return attempt.texts
            self.stats.errors[attempt.error or f"http_{attempt.status}"] += 1
            if 400 <= attempt.status < 500:
                return None  # Twilio does not retry a 4xx: a refusal, not a failure
        self.stats.unanswered += 1
        return None

    async def _attempt(self, data: bytes, headers: dict[str, str]) -> Attempt:
        started, clock = time.time(), time.monotonic()
        base = self.stage.pick_web()
        if base is None:  # the load balancer has no process to send it to: 502
            return Attempt(started, 0.0, 0, "no_web_process", None)
        try:
            async with self.http.post(
                base + SMS_PATH, data=data, headers=headers,
                timeout=aiohttp.ClientTimeout(total=TWILIO_TIMEOUT_SECONDS),
            ) as response:
                text = await response.text()
                status = response.status
        except TimeoutError:
            return Attempt(started, time.monotonic() - clock, 0, "timeout", None)
        except aiohttp.ClientError as exc:
            return Attempt(started, time.monotonic() - clock, 0, type(exc).__name__, None)
        texts = twiml_texts(text) if status == 200 else None
        return Attempt(started, time.monotonic() - clock, status, None, texts)


class Person:
    """One customer: what it wants next, and how it reads a reply."""

    def __init__(self, customer: Customer, twilio: Twilio, stage: Stage, stats: LoadStats,
                 rng: random.Random) -> None:
        self.customer = customer
        self.twilio = twilio
        self.stage = stage
        self.stats = stats
        self.rng = rng
        self.link: str | None = None
        self.has_plan = customer.plan_id is not None

    async def sms(self, body: str) -> str:
        texts = await self.twilio.send(self.customer.phone, body)
        reply = "\n".join(texts or [])
        if (found := LINK.search(reply)) is not None:
            self.link = found[1]
        return reply

    async def converse(self, first: str, answer: Callable[[str], tuple[str, str] | None]) -> str:
        """Sends `first`, then answers each reply as the flow asks, until the flow is done or
        asks the same step again (what was sent was refused). A reply that says something went
        wrong: start over, as a person would (MENU, then BALANCE)."""
        reply = await self.sms(first)
        answered: set[str] = set()
        for _ in range(12):
            if not reply or any(word in reply for word in TROUBLE):
                self.stats.errors["recovered_from_unexpected_reply"] += 1
                # A person reads the apology (or waits for an answer that never came) first.
                await asyncio.sleep(self.rng.uniform(*RECOVERY_PAUSE))
                await self.sms("MENU")
                return await self.sms("BALANCE")
            said = answer(reply)
            if said is None:
                return reply
            step, words = said
            if step in answered:
                return reply
            answered.add(step)
            if step in ("agree", "confirm") and "Confirm:" in reply:
                self.stats.sms_payments_asked += 1
            reply = await self.sms(words)
        return reply

    def today(self) -> datetime:
        return datetime.now(ZoneInfo(self.customer.timezone))

    async def turn(self) -> None:
        roll = self.rng.random()
        c = self.customer
        if roll < 0.22:
            await self.pay(later=False)
        elif roll < 0.38:
            await self.pay(later=True)
        elif roll < 0.48 and self.has_plan:
            await self.extra()
        elif roll < 0.56 and c.offers:
            await self.sign_plan()
        elif roll < 0.70:
            await self.web_pay()
        elif roll < 0.80:
            await self.sms(self.rng.choice(("BALANCE", "balance", "LINK", "HELP")))
        elif roll < 0.90:
            await self.sms(self.rng.choice(MISREADS))
            await self.sms("MENU")
        else:
            await self.sms("hi")

    async def pay(self, *, later: bool) -> None:
        amount = self.rng.choice((25, 30, 40, 50, 60, 75))
        day = self.today().date() + timedelta(days=self.rng.randint(2, 9))

        def answer(reply: str) -> tuple[str, str] | None:
            if "Reply OK, or send a new email" in reply:
                return "contact", "ok"
            if "Offers for you" in reply:
                found = re.search(r"(\d)\) Skip", reply)
                return ("offer", found[1]) if found else None
            if "How much would you like to pay?" in reply or "Reply an amount" in reply:
                return "amount", self.rng.choice((f"${amount}", f"{amount}.00", str(amount)))
            if "Pay with" in reply or "Which payment method?" in reply:
                return "method", "1"
            if "Pay now or later?" in reply or "Reply NOW, or a date" in reply:
                return "date", f"{day.month}/{day.day}" if later else "now"
            if "Confirm:" in reply:
                return "confirm", "yes"
            if "Reply AGREE" in reply:
                return "agree", "agree"
            return None

        reply = await self.converse("PAY", answer)
        if reply.startswith("Done:") or "scheduled for" in reply:
            self.stats.sms_payments_done += 1

    async def extra(self) -> None:
        amount = self.rng.choice((25, 30, 40))

        def answer(reply: str) -> tuple[str, str] | None:
            if "How much extra would you like to pay" in reply:
                return "amount", str(amount)
            if re.search(r"Pay \$[\d,.]+ now from .*Reply YES", reply, re.S):
                return "confirm", "yes"
            return None

        await self.sms("MENU")
        await self.converse("EXTRA", answer)
        self.stats.extras += 1

    async def sign_plan(self) -> None:
        def answer(reply: str) -> tuple[str, str] | None:
            return ("agree", "agree") if "Reply AGREE to sign" in reply else None

        await self.sms("MENU")
        reply = await self.converse("PLAN", answer)
        if "your plan is set" in reply:
            self.stats.plans_signed += 1
            self.has_plan = True

    # ------------------------------------------------------------------ the web

    async def web_pay(self) -> None:
        """Open the link from the last text (asking for it with LINK when there is none) and
        pay a small amount with the saved card through the portal's forms."""
        if self.link is None:
            await self.sms("LINK")
        if self.link is None:
            return
        self.stats.web_visits += 1
        amount = self.rng.choice((25, 35, 45))
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=TWILIO_TIMEOUT_SECONDS)
        ) as browser:
            web = WebVisit(browser, self.stage)
            for opened in range(3):  # a lost session (Redis flushed, a process died): again
                if opened:
                    self.stats.web_lost_sessions += 1
                try:
                    paid = await web.pay(self.link, amount)
                except LostSession as exc:
                    self.stats.errors[f"web_lost: {exc}"] += 1
                    continue
                except (TimeoutError, aiohttp.ClientError) as exc:
                    self.stats.errors[f"web_{type(exc).__name__}"] += 1
                    continue
                if paid:
                    self.stats.web_payments += 1
                return


class LostSession(Exception):
    """The portal no longer knows this browser (or the process died mid-way)."""


class WebVisit:
    """One browser on the portal, sent to whichever web process is live (the load balancer)."""

    def __init__(self, browser: aiohttp.ClientSession, stage: Stage) -> None:
        self.browser = browser
        self.stage = stage

    def _url(self, path: str) -> str:
        if path.startswith(PUBLIC_BASE_URL):
            path = path[len(PUBLIC_BASE_URL):]
        base = self.stage.pick_web()
        if base is None:
            raise LostSession("no live web process")
        if path.startswith("http"):
            path = "/" + path.split("/", 3)[3]
        return base + path

    async def _go(self, method: str, path: str, data: dict[str, str] | None = None) -> str:
        for _ in range(5):
            async with self.browser.request(
                method, self._url(path), data=data, allow_redirects=False
            ) as response:
                html = await response.text()
                if response.status in (301, 302, 303, 307):
                    method, path, data = "GET", response.headers["Location"], None
                    continue
                if response.status >= 500 or response.status in (400, 401, 403, 419):
                    raise LostSession(f"{method} {_path_of(path)} HTTP {response.status}")
                return html
        raise LostSession("redirected too often")

    async def pay(self, link: str, amount: int) -> bool:
        html = await self._go("GET", link)
        for _ in range(12):
            state = _state(html)
            if state is None:
                return "Thank you" in html
            data: dict[str, str]
            if state == "idle":
                data = {"action": "start"}
            elif state == "contact_review":
                data = {"action": "continue"}
            elif state == "offers":
                choice = _choice(html, "Choose my own amount")
                if choice is None:
                    return False
                data = {"action": "continue", "choice": choice}
            elif state == "amount":
                data = {"action": "continue", "amount": f"{amount}.00"}
            elif state in ("method", "awaiting_method"):
                data = {"action": "continue", "choice": "1"}
            elif state == "schedule":
                data = {"action": "now"}
            elif state in ("confirm", "agreement"):
                data = {"action": "pay", "consent": "yes"}
            else:
                return False
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', html)
            if csrf is None:
                raise LostSession("no form")
            before = html
            html = await self._go("POST", "/portal/pay",
                                  {**data, "state": state, "csrf_token": csrf[1]})
            if "Thank you" in html:
                return True
            if _state(html) == state and html == before:
                return False
        return False


def _path_of(url: str) -> str:
    """The route without the link's token (which must not reach a report)."""
    path = url.split("://", 1)[-1]
    path = "/" + path.split("/", 1)[1] if "/" in path else "/"
    return "/p/..." if path.startswith("/p/") else path.split("?", 1)[0]


def _state(html: str) -> str | None:
    found = re.search(r'name="state" value="([^"]+)"', html)
    return found[1] if found else None


def _choice(html: str, wanted: str) -> str | None:
    for value, label in re.findall(
        r'name="choice" value="(\d+)"[^>]*>\s*(.*?)</label>', html, re.S
    ):
        if wanted in " ".join(label.split()):
            return value
    return None


async def run_customers(
    stage: Stage, customers: list[Customer], *, until: float, concurrency: int
) -> LoadStats:
    """Until `until` (time.monotonic()), at most `concurrency` customers in a conversation at
    once; each waits a few seconds between conversations, as people do. The installments of the
    seeded plans fall due meanwhile (``InstallmentCalendar``)."""
    stats = LoadStats()
    stats.owed = {c.account_ref: c.balance_cents for c in customers}
    calendar = InstallmentCalendar(stage, customers)
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency * 2, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as http:
        twilio = Twilio(stage, http, stats)

        async def live(customer: Customer) -> None:
            person = Person(customer, twilio, stage, stats, stage.rng)
            await asyncio.sleep(stage.rng.uniform(0, 5))
            while time.monotonic() < until:
                async with gate:
                    if time.monotonic() >= until:
                        return
                    try:
                        await person.turn()
                    except Exception as exc:  # a finding of the load itself, never fatal
                        stats.errors[f"customer_{type(exc).__name__}"] += 1
                await asyncio.sleep(stage.rng.uniform(1, 6))

        await asyncio.gather(calendar.run(until), *(live(c) for c in customers))
    stats.installments_brought_forward = calendar.moved
    return stats
