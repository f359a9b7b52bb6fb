"""What a session opened by a personal link may reach: what the link was sent for, while the link
still stands (bot.ledger.queries.link_standing).

A plan-offer link reaches that offer's signing pages; a method-update link the method update
(and the payment flow its confirmation offers for the missed amount); any other link the payment
flow. A link whose time is up, or whose purpose is done, ends the session it opened too: every
page then answers 410 with what to do next, except the record of what the session did (its
receipts; a signed plan's confirmation).

Sessions proved by a code or knowledge answers (the look-up) have no link and are not limited
here; knowledge answers have limits of their own (see ``knowledge_only``).
"""

from __future__ import annotations

from aiohttp import web

from bot.ledger import queries as ledger
from bot.ledger.models import Link, WebSession
from bot.text.i18n import N_

# Reached by every session, with or without a link: the look-up starts a session of its own.
ANYONE = ("/portal/", "/portal/lookup", "/portal/verify", "/portal/sign-out")
PAYMENT_FLOW = ("/portal/pay", "/portal/methods", "/portal/receipt/", "/portal/payments")
REACH = {
    "plan_offer": ("/portal/plan",),
    "update_method": ("/portal/method", "/portal/method/", *PAYMENT_FLOW),
}
LANDING = {"plan_offer": "/portal/plan", "update_method": "/portal/method"}


def landing(link: Link) -> str:
    return LANDING.get(link.purpose, "/portal/pay")


def _reaches(prefixes: tuple[str, ...], path: str) -> bool:
    # "/portal/method" must not reach "/portal/methods" by prefix: a prefix ends at a segment.
    return any(
        path == p or (p.endswith("/") and path.startswith(p)) or path.startswith(p + "/")
        for p in prefixes
    )


def knowledge_only(row: WebSession | None) -> bool:
    """Proved by SSN last 4 + date of birth: a look-up, not proof. Such a session pays, once,
    but changes neither the contacts nor the saved methods."""
    return row is not None and row.verified_by == "knowledge"


def out_of_reach(
    request: web.Request, link: Link, standing: str | None
) -> web.StreamResponse | None:
    """The answer instead of the page asked for, or None when this session may have it."""
    path = request.path
    if path in ANYONE:
        return None
    if standing is not None:
        # The signing pages of an accepted offer show its confirmation and sign nothing twice.
        record_of_it = path.startswith("/portal/receipt/") or (
            standing == ledger.LINK_ACCEPTED and _reaches(REACH["plan_offer"], path)
        )
        if record_of_it:
            return None
        return closed_page(request, link, standing)
    reach = REACH.get(link.purpose, PAYMENT_FLOW)
    if _reaches(reach, path):
        return None
    return web.HTTPSeeOther(landing(link))


def closed_page(request: web.Request, link: Link, standing: str) -> web.Response:
    """410 with the usual helpful page for a link that no longer opens anything."""
    from portal_fallback.app import page

    if standing in (ledger.LINK_WITHDRAWN,) or (
        standing == ledger.LINK_EXPIRED and link.purpose == "plan_offer"
    ):
        return page(
            request,
            "plan_closed.html",
            410,
            title=N_("Offer no longer available"),
            reason="withdrawn" if standing == ledger.LINK_WITHDRAWN else "expired",
        )
    if standing == ledger.LINK_EXPIRED:
        return page(request, "link_expired.html", 410)
    titles = {
        ledger.LINK_ACCEPTED: N_("Offer already accepted"),
        ledger.LINK_PAID_OFF: N_("Nothing owed"),
    }
    title = titles.get(standing, N_("This link has been used"))
    return page(
        request,
        "link_done.html",
        410,
        title=title,
        reason=standing,
        plan=link.purpose == "plan_offer",
    )
