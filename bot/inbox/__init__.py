"""The staff's work on conversations: the handoff from the bot to a person and back (requested,
claimed, answered, resolved), notes, canned replies, wrong numbers, and the agents' outbound
webhook.

May import the ledger, config, text, outreach and providers (an agent's reply leaves through
the SMS provider), and bot/coordination (the live feed); never the engine, the API or the pages.
"""
