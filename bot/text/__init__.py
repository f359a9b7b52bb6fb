"""The texts customers read: GSM-7 rules, the rendering of SMS templates (bot/templates/sms) and
the languages they are read in (`i18n.py`: gettext catalogs in bot/locale, Babel).

May import: bot.money, states.replies, babel, jinja2. Nothing else in bot.
"""
