"""The inbound webhooks of Twilio (SMS, delivery status), Stripe (payment events) and SendGrid
(email events): each verifies its signature with the SDK's own validator, then dispatches.

May import: bot's services and the engine's Inbound (twilio.py feeds the engine). Nothing in bot
imports these, except the app factory that mounts them.
"""
