"""Outbound HTTP: the client that makes the call, the outcome policy, and the backoff schedule."""
