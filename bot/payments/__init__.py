"""Money in and back: the one rule of what may be collected (collectable), the payment service
that writes the ledger row before the processor is asked, and the supervisor's operations on a
payment: refunds (refunds) and canceling a scheduled one-off payment (cancellation).

May import: bot.ledger, bot.providers, bot.plans.changes (payments lower a plan when paid early);
refunds and cancellation also bot.outreach.email_outbox (their receipt or notice is queued in the
transaction that makes it true; email_outbox imports nothing of payments at run time) and
bot.outreach.email_texts (the words of those emails, in the account's language).
"""
