"""The worker (`paybot worker`): the loop and its jobs (charges, declines, overdue emails,
outreach), each claimed with SKIP LOCKED so that any number of workers run side by side.

May import: the domain packages (ledger, payments, plans, outreach), providers, webhooks.stripe.
"""
