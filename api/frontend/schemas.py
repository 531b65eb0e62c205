"""Payloads of ``POST /v1/exposures`` (deferred exposures, sent when a component is seen)."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from personalization.decision.bundle import LocalDecision

__all__ = ["MAX_TOKENS", "ExposureBatch", "ExposuresAccepted", "RejectedExposure"]

#: Tokens per call: ten full personalize answers' worth.
MAX_TOKENS = 500


class ExposureBatch(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/exposures``: the ``exposure_token`` of each component the visitor has now seen (from a
    ``POST /v1/personalize`` with ``"exposures": "on_view"``). A token sent twice is counted once."""

    tokens: Annotated[
        list[str],
        Meta(
            max_length=MAX_TOKENS,
            description="The `exposure_token` of each component seen, as `POST /v1/personalize` gave it (up to 500).",
        ),
    ] = []
    #: Decisions an SDK made locally from the bundle (docs/decisions.md, "Local evaluation"): each is
    #: recomputed from the bundle it names and recorded only if variant and propensity agree.
    decisions: Annotated[
        list[LocalDecision],
        Meta(
            max_length=MAX_TOKENS,
            description="Decisions made locally from `GET /v1/bundle` (up to 500), each with its bundle version and inputs.",
        ),
    ] = []


class RejectedExposure(Struct, frozen=True, kw_only=True):
    """One token (or local decision) that was not recorded, in the vocabulary of a 4xx body's ``extra``
    (``key``, ``message``); ``reason`` is the older name of ``message``, kept for one release."""

    index: Annotated[int, Meta(description="Position of the item in `tokens` (or in `decisions`), from 0.")]
    key: Annotated[
        str, Meta(description="Where, as a 4xx body's `extra[].key` says it: `tokens[<index>]` or `decisions[<index>]`.")
    ]
    message: Annotated[
        str,
        Meta(description="Why: for a token `malformed`, `bad signature`, `expired` or `unsupported version`."),
    ]
    reason: Annotated[str, Meta(description="Deprecated alias of `message` (one release).")]


class ExposuresAccepted(Struct, frozen=True, kw_only=True):
    accepted: Annotated[
        int,
        Meta(
            description="Items (tokens, decisions) whose exposure was recorded now. The global holdout's `_global` "
            "exposure the server derives for local decisions (one per local decide call) is not counted here."
        ),
    ]
    duplicates: Annotated[
        int, Meta(description="Valid tokens whose exposure was recorded before (a re-sent token): not counted twice.")
    ]
    rejected: Annotated[
        list[RejectedExposure], Meta(description="Tokens not recorded, with where (`key`) and why (`message`).")
    ] = []
