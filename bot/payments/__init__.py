"""Money in: the one rule of what may be collected (collectable) and the payment service that
writes the ledger row before the processor is asked.

May import: bot.ledger, bot.providers, bot.plans.changes (payments lower a plan when paid early).
"""
