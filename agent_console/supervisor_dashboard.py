"""The supervisors' dashboard (today and the last 30 days, from bot/reports/dashboard.py) drawn
as small inline SVG bar charts built here (no script, no chart library, nothing from a CDN: the
console's CSP allows neither), and the wrong-number report (bot/reports/wrong_numbers.py)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from agent_console.app import page, require_role
from agent_console.inbox import REASONS
from bot import appkeys
from bot.money import format_cents
from bot.reports.dashboard import Figures, dashboard
from bot.reports.wrong_numbers import list_wrong_numbers

CHART_WIDTH = 380  # the SVG's own units (CSS pixels at full size; it shrinks to fit)
LABEL_WIDTH = 135
ROW_HEIGHT = 22
CHANNEL_NAMES = {"sms": "SMS", "web": "Web", "worker": "Worker (scheduled)"}


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    text: str  # the value as read: "$1,250.00", "12"
    y: int
    width: float  # in the SVG's units, at least 1 when the value is not 0


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    width: int
    height: int
    label_width: int
    summary: str  # the chart in words (its SVG's aria-label)


def chart(title: str, items: list[tuple[str, int, str]]) -> Chart:
    """A horizontal bar per item (label, value, text), scaled to the largest."""
    top = max((value for _, value, _ in items), default=0)
    room = CHART_WIDTH - LABEL_WIDTH - 70  # the value's text sits after its bar
    bars = [
        Bar(label, value, text, i * ROW_HEIGHT,
            (max(1.0, round(room * value / top, 1)) if value and top else 0.0))
        for i, (label, value, text) in enumerate(items)
    ]
    summary = f"{title}: " + "; ".join(f"{label} {text}" for label, _, text in items)
    return Chart(title, bars, CHART_WIDTH, max(1, len(items)) * ROW_HEIGHT, LABEL_WIDTH,
                 summary)


def charts(figures: Figures) -> dict[str, Chart]:
    funnel = figures.funnel
    reasons = figures.handoffs_by_reason
    return {
        "collected": chart("Collected by channel", [
            (CHANNEL_NAMES.get(k, k), cents, format_cents(cents))
            for k, cents in figures.collected_cents.items()
        ]),
        "funnel": chart("Funnel (phone numbers)", [
            ("Texted", funnel.texted, str(funnel.texted)),
            ("Replied", funnel.replied, str(funnel.replied)),
            ("Verified", funnel.verified, str(funnel.verified)),
            ("Paid", funnel.paid, str(funnel.paid)),
        ]),
        "handoffs": chart("Handoffs by reason", [
            (REASONS.get(reason, reason), count, str(count)) for reason, count in reasons.items()
        ]),
    }


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "no reply yet"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes >= 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def add_routes(console: web.Application) -> None:
    console.router.add_get("/supervisor/dashboard", show)
    console.router.add_get("/supervisor/wrong-numbers", wrong_numbers)


@require_role("supervisor")
async def show(request: web.Request) -> web.StreamResponse:
    now = request.config_dict[appkeys.CLOCK].now()
    async with request.config_dict[appkeys.DATABASE].session() as db:
        board = await dashboard(db, now=now)
    periods = [("Today", "today", board.today), ("Last 30 days", "month", board.last_30_days)]
    return page(request, "supervisor_dashboard.html", title="Dashboard", board=board,
                periods=[(name, key, f, charts(f)) for name, key, f in periods],
                duration=duration)


@require_role("supervisor")
async def wrong_numbers(request: web.Request) -> web.StreamResponse:
    try:
        number = max(1, int(request.query.get("page") or 1))
    except ValueError:
        number = 1
    async with request.config_dict[appkeys.DATABASE].session() as db:
        found = await list_wrong_numbers(db, page=number)
    return page(request, "supervisor_wrong_numbers.html", title="Wrong numbers", found=found)
