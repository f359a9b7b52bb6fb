"""Messages that leave unprompted: outreach (offers, reminders, notices), campaigns, notifications,
the email outbox, and the compliance rules (quiet hours, opt-outs) every one of them obeys.

May import: bot.ledger, bot.payments, bot.text, bot.providers, bot.config, states.replies.
"""
