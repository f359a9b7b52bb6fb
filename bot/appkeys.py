"""Every typed key the aiohttp application carries, in one place."""

from __future__ import annotations

from aiohttp import web

from bot.clock import Clock
from bot.config.settings import Settings
from bot.coordination import Coordinator
from bot.ledger.db import Database
from bot.providers import Providers
from bot.sms.engine import ConversationEngine

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
PROVIDERS = web.AppKey("providers", Providers)
DATABASE = web.AppKey("database", Database)
COORDINATOR = web.AppKey("coordinator", Coordinator)
ENGINE = web.AppKey("engine", ConversationEngine)
