"""Deferred exposures over HTTP: tokens handed out by ``/v1/personalize``, taken back by ``/v1/exposures``.

``POST /v1/personalize`` with ``"exposures": "on_view"`` queues no exposure; :func:`with_exposure_tokens`
puts each entry's exposure, signed, in its ``exposure_token``. The front end sends the tokens of the
components the visitor actually saw to ``POST /v1/exposures`` (a beacon: ``text/plain`` JSON and the
delivery key as ``?key=`` are accepted). Verification, the once-only claim and the queueing are
:mod:`personalization.store.deferred_exposures`; this module only wires them to HTTP.

Answer: 202 ``{"accepted", "duplicates", "rejected": [{"index", "reason"}]}`` when any token was
valid (like ``/v1/events``); 400 with the standard error body (``extra`` naming ``tokens[i]`` and the
reason) when none was.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Response
from msgspec.structs import replace

from api.bundles import check_local_decisions
from api.frontend.schemas import ExposureBatch, ExposuresAccepted, RejectedExposure
from api.http.auth import KeyRing, requires_delivery
from api.http.handlers import post
from api.http.schemas import PersonalizedEntry
from api.settings import Settings
from personalization.errors import InvalidInput, Problem, RejectedBatch, StorageUnavailable
from personalization.store.deferred_exposures import DeferredExposures
from personalization.store.exposure_tokens import (
    ExposureTokens,
    secret_from_key_digests,
)
from personalization.types import Exposure

__all__ = ["exposure_tokens_for", "record_exposures", "with_exposure_tokens"]


def exposure_tokens_for(settings: Settings, key_ring: KeyRing) -> ExposureTokens:
    """The signer every worker builds alike: ``VARY_EXPOSURE_TOKEN_SECRET``, else a secret derived
    from the key digests (see :func:`personalization.store.exposure_tokens.secret_from_key_digests`)."""
    if settings.exposure_token_secret:
        return ExposureTokens(settings.exposure_token_secret.encode())
    delivery, admin = key_ring.digests()
    return ExposureTokens(secret_from_key_digests(delivery, admin))


def with_exposure_tokens(
    entries: Sequence[PersonalizedEntry], exposures: Sequence[Exposure], tokens: ExposureTokens, now: float
) -> list[PersonalizedEntry]:
    """Each entry with the signed exposure of its decision in ``exposure_token``."""
    by_id = {exposure.id: exposure for exposure in exposures}
    return [
        replace(entry, exposure_token=tokens.sign(by_id[entry.exposure_id], now))
        if entry.exposure_id in by_id
        else entry
        for entry in entries
    ]


@post(
    "/v1/exposures",
    guards=[requires_delivery],
    status_code=202,
    tags=["delivery"],
    operation_id="recordExposures",
    summary="Exposures of components the visitor has seen (deferred exposures)",
)
async def record_exposures(data: JSONBody[ExposureBatch], state: State) -> Response[ExposuresAccepted]:
    """Verify each ``exposure_token`` and record its exposure once. Bad, forged or expired tokens are
    listed in ``rejected`` with their index, ``key`` (``tokens[i]``) and ``message`` — the vocabulary of a
    4xx body's ``extra`` — and ``reason`` (``message``'s older name, kept for one release); 400 when no
    token was valid. Accepted local decisions also log their ``_global`` exposure, derived from the bundle
    (docs/decisions.md, "Local exposures")."""
    runtime = state.runtime
    assert runtime.exposures is not None
    deferred = DeferredExposures(runtime.redis, runtime.exposures, state.exposure_tokens)
    now = time.time()
    if not data.tokens and not data.decisions:
        raise InvalidInput("nothing to record", problems=[Problem("tokens", "send `tokens` or `decisions` (at least one)")])
    good, rejected = deferred.verify(data.tokens, now)
    # Decisions made locally (api/bundles.py): recomputed from the bundle each names.
    local = check_local_decisions(state.bundles, runtime, data.decisions, now)
    if not good and not local.accepted:
        raise RejectedBatch(
            "no valid exposure token or local decision in the batch; nothing was recorded",
            problems=[Problem(f"tokens[{r.index}]", r.reason) for r in rejected]
            + [Problem(f"decisions[{index}]", why) for index, why in local.rejected],
        )
    try:
        if local.assignments:  # the SDK's sticky assignments, reconciled into the visitor's profile
            runtime.exposures.submit((), local.assignments)
        # With each local decide() call's `_global` exposure, as /v1/personalize logs it (api/bundles.py):
        # claimed in the same round trip (once per call), not an item of the batch, so not in `accepted`.
        accepted = await deferred.record([exposure for _, exposure in good + local.accepted], now, local.derived)
    except Exception as exc:
        raise StorageUnavailable(
            f"exposures could not be recorded ({type(exc).__name__}); retry with the same tokens"
        ) from exc
    body = ExposuresAccepted(
        accepted=accepted,
        duplicates=len(good) + len(local.accepted) - accepted,
        rejected=[
            RejectedExposure(index=r.index, key=f"tokens[{r.index}]", message=r.reason, reason=r.reason) for r in rejected
        ]
        + [RejectedExposure(index=index, key=f"decisions[{index}]", message=why, reason=why) for index, why in local.rejected],
    )
    return Response(body, status_code=202)
