"""Accounts and who may act on them: loading accounts (CSV and REST), the second factor of an
unknown customer, contact changes proven by a code.

May import: bot.ledger, bot.payments, bot.outreach.notifications, bot.providers, states.
"""
