"""The worker (`paybot worker`): the loop (loop.py) and its jobs, one module each: claims,
charges, declines, outreach_pass, handoff_waits, overdue; with rate_limits, rules, plan_notices
and config. Each claimed with SKIP LOCKED so that any number of workers run side by side.

May import: the domain packages (ledger, payments, plans, outreach, inbox, text), bot.providers,
bot.config, bot.coordination (the shared rate limit). Never the engine, the webhooks or the web app.
"""
