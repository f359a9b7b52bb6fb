"""Benchmarks (not tests): `python -m bench.sms_load --help`."""
