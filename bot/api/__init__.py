"""The operators' REST API (/api/v1): routes, the typed request and response models, the OpenAPI
document generated from them.

May import: the domain packages (ledger, accounts, payments, plans), bot.appkeys; never bot.sms.
"""
