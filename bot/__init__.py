"""PayBot: the conversation engine and the services under it. Each package names what it owns;
docs/architecture.md is the map, and tests/test_architecture.py holds the imports to it.

Any package may import the small modules at this level that import nothing of ours: clock, money,
phones, security. The others here (app, appkeys, serving, coordination) are the top or Redis.
"""
