"""The /api/v1 sub-application: its routes, one module per resource, behind the problem and
API-key middlewares (bot/api/problems.py)."""

from __future__ import annotations

from aiohttp import web

from bot.api import accounts, conversations, links, offers, openapi, plans
from bot.api.problems import json_errors, require_api_key


def create_app() -> web.Application:
    app = web.Application(middlewares=[json_errors, require_api_key])
    app.router.add_get("/openapi.json", openapi.openapi)
    app.router.add_get("/accounts/{account_id}", accounts.get_account)
    app.router.add_post("/accounts", accounts.upsert)
    app.router.add_post("/accounts/{account_id}/links", links.create_link)
    app.router.add_get("/conversations", conversations.list_conversations)
    app.router.add_get("/conversations/{phone}", conversations.get_conversation)
    app.router.add_post("/conversations/{phone}/claim", conversations.claim)
    app.router.add_post("/conversations/{phone}/messages", conversations.post_message)
    app.router.add_post("/conversations/{phone}/handback", conversations.hand_back)
    app.router.add_post("/plans/{plan_id}/cancel", plans.cancel_plan)
    app.router.add_post("/accounts/{account_id}/offers", offers.post_offer)
    app.router.add_get("/accounts/{account_id}/offers", offers.list_offers)
    app.router.add_get("/offers/{offer_id}", offers.get_offer)
    app.router.add_post("/offers/{offer_id}/withdraw", offers.withdraw_offer)
    return app
