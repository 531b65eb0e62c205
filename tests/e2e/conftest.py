"""Fixtures for end-to-end tests: the real browser (see ``browser.py``)."""

from tests.e2e.browser import browser, page  # noqa: F401  (pytest fixtures)
