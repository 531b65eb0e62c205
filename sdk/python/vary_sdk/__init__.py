"""Vary's decisions in your Python web app, with no network call: ``VaryClient(bundle).decide(...)``.

The decision code is Vary's own :mod:`personalization.decision`, shipped inside this distribution
(not a port), so a decision made here is the one ``POST /v1/personalize`` makes for the same inputs —
``tests/conformance/decisions.json`` checks it case by case. See ``sdk/python/README.md``.
"""

from vary_sdk.client import (
    BundleError,
    GlobalHoldout,
    LocalAnswer,
    LocalEntry,
    SignatureError,
    VaryClient,
    exposures_payload,
)

__all__ = [
    "BundleError",
    "GlobalHoldout",
    "LocalAnswer",
    "LocalEntry",
    "SignatureError",
    "VaryClient",
    "exposures_payload",
]
__version__ = "0.1.0"
