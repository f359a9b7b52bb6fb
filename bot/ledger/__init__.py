"""The ledger: the SQL schema (models), its migrations, the engine (db) and the reads and writes
every other package shares (queries).

May import: bot.config, bot.security, bot.money, bot.phones, bot.clock. Nothing above it.
"""
