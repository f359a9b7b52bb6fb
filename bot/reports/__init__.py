"""What supervisors read across accounts: payments with filters, paging and a CSV export
(payments.py), the dashboard's figures for today and the last 30 days (dashboard.py), and the
numbers marked wrong (wrong_numbers.py, last 4 digits only). Plain
dataclasses out; drawing them is the console's job. Dates and times are UTC, and say so.

May import: bot.ledger, bot.payments, bot.money, bot.clock.
"""
