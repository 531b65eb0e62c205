"""Embedded Redis-protocol servers for ``make run`` and tests: one Valkey, or a cluster."""
