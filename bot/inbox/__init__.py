"""The staff's work on conversations: the handoff from the bot to a person and back (requested,
claimed, answered, resolved), notes, canned replies, wrong numbers, and the agents' outbound
webhook.

May import the ledger, config, text, outreach, payments (what is open) and plans (offers), the
providers (an agent's reply leaves through the SMS provider), and bot/coordination (the live
feed); never the engine, the API or the pages.

Modules: handoffs (a handoff's life), reads (inbox views, a conversation whole with its account
panel), replies (an agent's message, link, offer, claim and hand-back), notes, canned, feed (the
live feed's event shapes), agent_webhook (the outbound webhook's queue and delivery).
"""
