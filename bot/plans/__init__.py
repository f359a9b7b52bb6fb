"""Payment plans: offers, signing and cancelling, changes by text, the terms signed and the
agreement copy sent.

May import: bot.ledger, bot.payments, bot.text, bot.outreach (the notifier, the outbox, the
queue), bot.providers, bot.config.
"""
