"""Configuration, declared once as typed models: the environment (settings), the creditors' flow
settings (flow) and the review of a deployment (check).

May import: bot.ledger.models only (flow settings are stored on a creditor).
"""
