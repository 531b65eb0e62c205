"""Everything one request's decision needs: pure functions and values, no I/O (see the import-purity test)."""
