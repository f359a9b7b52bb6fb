"""The fault-injection run (`make chaos`): PayBot's whole system under load while its parts die,
and the invariants checked at the end (docs/reliability.md has the figures).

May import bot (to seed and read the ledger), tests.fakes (the local Twilio and SendGrid peers)
and the SDKs; nothing imports it.

    .venv/bin/python -m bench.chaos --minutes 2 --customers 200 --seed 7
    .venv/bin/python -m bench.chaos --minutes 30 --customers 400 --seed 11 --json chaos.json

Modules: stage (what the harness hands the load and the checks), services (a private
PostgreSQL and Redis), stripe_proxy (localstripe behind a fault proxy that keeps Stripe's
idempotency; Stripe's events late, twice, out of order), fleet (two `paybot serve`, two
`paybot worker`), faults (the seeded schedule), seed, customers (the simulated customers, with
Twilio's retries), invariants, report.
"""
