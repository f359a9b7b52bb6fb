"""Staff accounts of the console: who they are (agent or supervisor), their password (Argon2id)
and second factor (TOTP, required of supervisors), one-time setup links, sign-in with its limits
and backoff, and console sessions (idle and absolute expiry, a CSRF token each). Every change is
audited with the staff member's identity.

May import the ledger, config, security and clock, and redis (the per-address sign-in limit is
shared by every web process); never the engine, the API, the console's pages or the processes.
"""
