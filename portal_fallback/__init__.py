"""The customer portal: the web renderer of the flows the SMS conversation drives (links, look-up,
one page per step, method entry, plan signing), with its own sessions and middlewares.

May import: bot's services and the engine's web face (web_view, web_step). Nothing in bot imports
it, except the app factory that mounts it.
"""
