"""Helpers shared by the test packages: waiting for a condition, an in-process Worker, submitting
messages. Fixtures defined here are made visible to every test by `tests/conftest.py`."""
