"""The operators' REST API (/api/v1): routes, the typed request and response models, the OpenAPI
document generated from them.

May import: the domain packages (ledger, accounts, payments, plans, outreach), bot.appkeys;
never bot.sms (the engine is reached through the app, as `appkeys.ENGINE`).
"""

from bot.accounts.loading import FIELDS
from bot.api.app import create_app
from bot.api.models import OFFER_FIELDS

__all__ = ["FIELDS", "OFFER_FIELDS", "create_app"]
