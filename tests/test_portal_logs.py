"""The portal's flow steps log as a text's turn does: each line names the conversation by its
tag (the same tag as the customer's texts) and the account, never the phone or the email."""

from __future__ import annotations

from typing import Any

from tests.seed import add_account
from tests.test_logs import MARIA, STAMP, capture, tag  # noqa: F401 (capture: a fixture)
from tests.test_portal import Browser, link_for


async def test_a_portal_step_logs_the_conversations_tag_and_no_phone(
    app: Any, client: Any, phone: Any, capture: Any  # noqa: F811
) -> None:
    account = await add_account(app)
    link = await link_for(app, phone)  # the customer's texts: the conversation of MARIA
    out = capture(log_format="json")
    browser = Browser(client)
    await browser.get(link)
    await browser.step(action="start")
    assert browser.state == "contact_review"

    (step,) = [line for line in out.json() if line["event"] == "portal step answered"]
    assert isinstance(step.pop("request_id"), str)
    assert step == {
        "event": "portal step answered", "channel": "web", "asked": "pay",
        "from_state": "idle", "state": "contact_review", "stale": False,
        "conversation": tag(MARIA), "account_id": account.id,
        "level": "info", "logger": "portal_fallback.flow_pages", "timestamp": STAMP,
    }
    assert "5555550100" not in out.text and "maria@example.com" not in out.text
