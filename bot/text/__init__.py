"""The texts customers read: GSM-7 rules and the rendering of SMS templates (bot/templates/sms).

May import: bot.money, states.replies. Nothing else in bot.
"""
