"""Payloads of ``POST /v1/exposures`` (deferred exposures, sent when a component is seen)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

__all__ = ["MAX_TOKENS", "ExposureBatch", "ExposuresAccepted", "RejectedExposure"]

#: Tokens per call: ten full personalize answers' worth.
MAX_TOKENS = 500


class ExposureBatch(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/exposures``: the ``exposure_token`` of each component the visitor has now seen (from a
    ``POST /v1/personalize`` with ``"exposures": "on_view"``). A token sent twice is counted once."""

    tokens: Annotated[list[str], Meta(min_length=1, max_length=MAX_TOKENS)]


class RejectedExposure(Struct, frozen=True, kw_only=True):
    #: Position of the token in ``tokens``.
    index: int
    #: ``malformed``, ``bad signature``, ``expired`` or ``unsupported version``.
    reason: str


class ExposuresAccepted(Struct, frozen=True, kw_only=True):
    #: Exposures recorded now.
    accepted: int
    #: Valid tokens whose exposure was recorded before (a re-sent token): not counted twice.
    duplicates: int
    rejected: list[RejectedExposure] = []
