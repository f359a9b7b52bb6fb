"""The `paybot` command: one module per command group; `python -m bot.cli` runs it too.

May import: anything in bot (it is the top of the stack).
"""
