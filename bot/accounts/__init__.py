"""Accounts and who may act on them: loading accounts (CSV and REST), the second factor of an
unknown customer, contact changes proven by a code; and their creditors (name, disclosure,
flow settings).

May import: bot.ledger, bot.config, bot.payments, bot.outreach.notifications, bot.providers,
states.
"""
