"""The conversation engine: one inbound message (SMS or a web step) in, the replies out. Routing,
each flow's turns and the parsing of what customers write.

May import: everything below it (ledger, payments, plans, accounts, outreach, text, providers)
and states.
"""
