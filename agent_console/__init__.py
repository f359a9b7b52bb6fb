"""The staff console at /agent/: sign-in (password, and TOTP for supervisors), the agents' live
inbox and conversation view with the account beside it, their actions, and the supervisors'
pages; server-rendered (Jinja2) with a little JavaScript of its own, live over server-sent
events fed by the Redis agents' feed. Its own middlewares: a staff session on every page but
sign-in and setup, CSRF on every form, security headers, roles.

May import bot's services (bot/staff, bot/inbox, bot/ledger, bot/payments, bot/plans, bot/outreach,
bot/text), bot/appkeys and bot/coordination, and portal_fallback.sessions.client_ip (the one rule
for a client's address). The supervisors' pages also read bot/reports and bot/accounts, and
their preview walks states/payment.py (with bot.sms.parsing's Meaning) titled by
portal_fallback.flow_pages.STEP_TITLES. Nothing in bot imports it, except the app factory
that mounts it.
"""
