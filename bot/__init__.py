"""PayBot: the conversation engine and the services under it. Each package names what it owns;
docs/architecture.md is the map, and tests/test_architecture.py holds the imports to it.
"""
