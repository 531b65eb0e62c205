"""Model routes (admin): register, list, activate and roll back segment models and bandit policies,
and evaluate a policy off-policy on logged traffic before activating it.

Bandit policies launch through a gate (:mod:`personalization.models.launch_gate`): registering one
starts its off-policy verdict in the background, and ``PUT /v1/models/active`` activates it only when
the verdict passed — else a 409 with the estimates, unless ``"force": true`` (recorded). A candidate
can also run in shadow beside the live policy (``PUT /v1/models/shadow``): its choices are logged on
every exposure of the experience, never served.

Every version that comes in — the card's in an upload, the body of an activate or roll-back, a URL
path — is checked for shape first (:mod:`personalization.models.versions`: a 400 naming the field);
an upload of a version that is registered already is a 409, never a replacement; a model file whose
zip would unpack beyond the bounds (:mod:`personalization.models.archive`) is a 422, unread."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request
from litestar.datastructures import State, UploadFile
from litestar.params import FromPath, JSONBody, KwargDefinition, MultipartBody
from msgspec import Meta, Struct

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import delete, get, post, put
from api.http.schemas import ActivateModel, ModelInfo, ModelList
from personalization.errors import (
    InvalidInput,
    LaunchGateRefused,
    NotFound,
    Problem,
    Unusable,
)
from personalization.models.evaluation import evaluate_served
from personalization.models.files import ModelLoadError
from personalization.models.launch_gate import (
    STALE_PENDING_S,
    SYNC_WAIT_S,
    GateRunner,
    GateVerdict,
    LaunchGate,
    evaluate_gate,
    load_gate,
    record_force,
)
from personalization.models.ope import OffPolicyEstimate
from personalization.models.policy import PolicyCard
from personalization.models.registry import SEGMENTS_SLOT, RegisteredModel, shadow_slot
from personalization.models.versions import check_version

__all__ = [
    "MAX_BOOTSTRAP",
    "MAX_MODEL_BYTES",
    "EvaluateRequest",
    "ModelController",
    "ModelEvaluation",
    "ModelUpload",
    "ShadowRequest",
    "Shadows",
]

MAX_MODEL_BYTES = 64 * 1024 * 1024
#: Bootstrap resamples an evaluate request may ask for: the work grows linearly with it.
MAX_BOOTSTRAP = 2000


class EvaluateRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional settings of ``POST /v1/models/{version}/evaluate``; the body may be omitted."""

    n_bootstrap: Annotated[
        int, Meta(ge=1, le=MAX_BOOTSTRAP, description="Bootstrap resamples for the intervals (more: tighter, slower).")
    ] = 500
    clip: (
        Annotated[float, Meta(gt=0, description="Clip importance weights at this value (`null`: no clipping).")] | None
    ) = None


class ModelEvaluation(OffPolicyEstimate, frozen=True, kw_only=True):
    """The :class:`~personalization.models.ope.OffPolicyEstimate` of a policy, and what it was evaluated on."""

    version: Annotated[str, Meta(description="The policy version evaluated.")]
    experience: (
        Annotated[str, Meta(description="The bandit experience whose logged traffic it was evaluated on.")] | None
    )
    n_bootstrap: Annotated[int, Meta(description="Bootstrap resamples used.")]
    clip: Annotated[float, Meta(description="The importance-weight clip used; null: none.")] | None


class ShadowRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PUT /v1/models/shadow``: the policy to run in shadow beside its experience's live one."""

    version: Annotated[
        str, Meta(min_length=1, max_length=128, description="The registered policy version to run in shadow.")
    ]


class Shadows(Struct, frozen=True, kw_only=True):
    """The policy version in shadow per ``bandit`` experience, and the live one it runs beside."""

    shadows: Annotated[dict[str, str], Meta(description="Experience → the policy version in shadow.")]
    live: Annotated[dict[str, str], Meta(description="Experience → the live policy version it runs beside.")]


@dataclass
class ModelUpload:
    """``multipart/form-data`` with the skops file as ``model`` and its card (JSON) as ``card``."""

    model: Annotated[UploadFile, KwargDefinition(description="The skops model file.")]
    card: Annotated[UploadFile, KwargDefinition(description="The model card, a JSON file (version, kind, metrics, …).")]


def _info(model: RegisteredModel, active: dict[str, str]) -> ModelInfo:
    card = model.card
    policy = isinstance(card, PolicyCard)
    return ModelInfo(
        version=model.version,
        kind="policy" if policy else "segments",
        experience=card.experience if isinstance(card, PolicyCard) else None,
        created_at=card.created_at,
        segments=[] if isinstance(card, PolicyCard) else list(card.segments),
        metrics=dict(card.metrics),
        sklearn_version=card.sklearn_version,
        rows=dict(card.rows),
        training_window=dict(card.training_window) if card.training_window else None,
        active=active.get(model.slot) == model.version,
    )


def _registry(state: State):
    runtime = runtime_of(state)
    assert runtime.models is not None
    return runtime.models


def gate_runner(state: State) -> GateRunner:
    """This worker's background launch-gate evaluations (made on first use)."""
    runner = state.get("launch_gates")
    if runner is None:
        runtime = runtime_of(state)

        def start(version: str) -> Coroutine[Any, Any, GateVerdict | None]:
            experiences = runtime.snapshot.experiences if runtime.snapshot is not None else {}
            return evaluate_gate(
                runtime.redis, _registry(state), version, experiences, partitions=runtime.settings.stream_partitions
            )

        runner = state["launch_gates"] = GateRunner(start)
    return runner


async def _shadows(state: State) -> Shadows:
    registry = _registry(state)
    active = await registry.active_versions()
    return Shadows(
        shadows=await registry.shadows(),
        live={slot.removeprefix("policy:"): v for slot, v in active.items() if slot != SEGMENTS_SLOT},
    )


def _key_fingerprint(request: Request) -> str:
    """Which admin key sent the request, without the key: the first 12 hex of its SHA-256."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return "admin key sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


async def _current_verdict(state: State, version: str) -> GateVerdict | None:
    """The stored verdict; started (and awaited up to ``SYNC_WAIT_S``) when there is none, it was an
    error (the logs may have grown since) or a ``pending`` left by a stopped worker."""
    redis = runtime_of(state).redis
    verdict = (await load_gate(redis, version)).verdict
    stale = verdict is not None and verdict.status == "pending" and time.time() - verdict.started_at > STALE_PENDING_S
    if verdict is None or verdict.status == "error" or stale:
        await gate_runner(state).wait(version, SYNC_WAIT_S)
        return (await load_gate(redis, version)).verdict
    deadline = time.monotonic() + SYNC_WAIT_S
    while verdict is not None and verdict.status == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # another worker (or a background task here) is evaluating it
        verdict = (await load_gate(redis, version)).verdict
    return verdict


async def _check_gate(state: State, request: Request, model: RegisteredModel, force: bool) -> None:
    """Let a policy through only on a ``pass`` verdict, or with ``force`` (recorded); else a 409."""
    verdict = await _current_verdict(state, model.version)
    status = verdict.status if verdict is not None else "none"
    if status == "pass":
        return
    if force:
        await record_force(runtime_of(state).redis, model.version, _key_fingerprint(request), status, time.time())
        return
    why = {
        "fail": "did not pass its launch gate",
        "error": "could not be judged by its launch gate",
        "pending": "is still being judged by its launch gate; retry shortly",
        "none": "has no launch-gate verdict yet",
    }[status]
    detail = f"policy {model.version} {why}"
    if verdict is not None:
        detail += f": {verdict.detail}"
    detail += '. Send "force": true to activate it anyway (recorded).'
    raise LaunchGateRefused(detail, msgspec.to_builtins(verdict) if verdict else None)


class ModelController(Controller):
    path = "/v1/models"
    guards = [requires_admin]
    tags = ["models"]

    @get("/", summary="Registered models and the active ones")
    async def list_models(self, state: State) -> ModelList:
        active, models = await _registry(state).list()
        return ModelList(
            active=active.get(SEGMENTS_SLOT),
            policies={slot.removeprefix("policy:"): v for slot, v in active.items() if slot != SEGMENTS_SLOT},
            models=[_info(m, active) for m in models],
        )

    @get("/{version:str}", summary="One model's card")
    async def show(self, state: State, version: FromPath[str]) -> ModelInfo:
        registry = _registry(state)
        model = await registry.get(check_version(version))  # an unknown version is a 404 (api/http/errors.py)
        return _info(model, await registry.active_versions())

    @post("/", status_code=201, request_max_body_size=MAX_MODEL_BYTES, summary="Register a model")
    async def register(self, state: State, data: MultipartBody[ModelUpload]) -> ModelInfo:
        """Upload a skops file and its card. It is checked (the card's version, the zip's bounds,
        trusted types only, same scikit-learn version) before it is stored; activate it with
        ``PUT /v1/models/active``. 400: not a version; 409: that version is registered already;
        422: the model file is refused."""
        model_bytes = await data.model.read()
        card_bytes = await data.card.read()
        registry = _registry(state)
        try:
            model = await registry.register(model_bytes, card_bytes)
        except ModelLoadError as exc:  # a taken or malformed version passes through: 409, 400
            raise Unusable(f"model refused: {exc}") from exc
        if isinstance(model.card, PolicyCard):
            gate_runner(state).start(model.version)  # the launch gate, in the background
        return _info(model, await registry.active_versions())

    @put("/active", summary="Activate (or roll back to) a version")
    async def activate(self, state: State, request: Request, data: JSONBody[ActivateModel]) -> ModelInfo:
        """Every worker switches within a moment (pub/sub); requests in flight finish on the old model.

        A bandit policy that is not the live one passes its launch gate first: 409 with the verdict in
        ``extra.gate`` unless the verdict is ``pass`` or the body says ``"force": true`` (recorded
        on ``GET /v1/models/{version}/gate``). With no verdict yet it is evaluated now, for up to 10 s."""
        registry = _registry(state)
        candidate = await registry.get(check_version(data.version))
        live = await registry.active_versions()
        if isinstance(candidate.card, PolicyCard) and live.get(candidate.slot) != candidate.version:
            await _check_gate(state, request, candidate, data.force)
        model = await registry.activate(data.version)
        runtime = runtime_of(state)
        await runtime.switch_model(model.slot, model.version)  # this worker at once; the others via pub/sub
        return _info(model, await registry.active_versions())

    @get("/shadow", summary="Policies running in shadow")
    async def shadows(self, state: State) -> Shadows:
        return await _shadows(state)

    @put("/shadow", summary="Run a policy in shadow beside the live one")
    async def set_shadow(self, state: State, data: JSONBody[ShadowRequest]) -> Shadows:
        """The policy's card names its experience; for every decision of it, the variant the shadow
        would have chosen and its probability are logged on the exposure (``shadow_version``,
        ``shadow_variant``, ``shadow_propensity``), while the live policy serves. 400: not a policy;
        404: unknown version."""
        model = await _registry(state).set_shadow(data.version)
        assert isinstance(model.card, PolicyCard) and model.card.experience
        await runtime_of(state).switch_model(shadow_slot(model.card.experience), model.version)
        return await _shadows(state)

    @delete("/shadow/{experience:str}", status_code=200, summary="Stop an experience's shadow policy")
    async def clear_shadow(self, state: State, experience: FromPath[str]) -> Shadows:
        """404 when the experience has no shadow."""
        registry = _registry(state)
        if experience not in await registry.shadows():
            raise NotFound(f"no policy in shadow for experience {experience!r}")
        await registry.clear_shadow(experience)
        await runtime_of(state).switch_model(shadow_slot(experience), "-")
        return await _shadows(state)

    @get("/{version:str}/gate", summary="A policy's launch-gate verdict")
    async def gate(self, state: State, version: FromPath[str]) -> LaunchGate:
        """The stored verdict (``pending``, ``pass``, ``fail``, ``error``) with the DR estimate and the
        logging policy's value, and any forced activation. 404: unknown version."""
        await _registry(state).get(check_version(version))
        return await load_gate(runtime_of(state).redis, version)

    @post("/{version:str}/gate", status_code=202, summary="Judge a policy again on the logs as they are now")
    async def rerun_gate(self, state: State, version: FromPath[str]) -> LaunchGate:
        model = await _registry(state).get(check_version(version))
        if not isinstance(model.card, PolicyCard):
            raise InvalidInput(f"{version} is a segment model; only policies have a launch gate",
                               problems=[Problem("version", "a segment model has no launch gate")])
        gate_runner(state).start(version)
        return await load_gate(runtime_of(state).redis, version)

    @post(
        "/{version:str}/evaluate",
        status_code=200,
        summary="Off-policy evaluation of a policy on logged traffic",
    )
    async def evaluate(
        self, state: State, version: FromPath[str], data: JSONBody[EvaluateRequest | None] = None
    ) -> ModelEvaluation:
        """What the policy would have earned on the experience's logged traffic (one row per exposed
        visitor, reward = one of the experience's goals within 7 days): IPS, SNIPS and DR estimates
        with 95% bootstrap intervals, the logging policy's own value, the effective sample size and
        warnings (missing or small propensities, poor overlap). 400: not a policy; 404: unknown
        version; 422: nothing to evaluate on (no logged traffic, experience no longer in the content)."""
        check_version(version)
        settings = data or EvaluateRequest()
        runtime = runtime_of(state)
        registry = _registry(state)
        experiences = runtime.snapshot.experiences if runtime.snapshot is not None else {}
        estimate, experience_key = await evaluate_served(  # its errors: api/http/errors.py
            runtime.redis,
            registry,
            version,
            experiences,
            n_bootstrap=settings.n_bootstrap,
            clip=settings.clip,
            partitions=runtime.settings.stream_partitions,
        )
        return ModelEvaluation(
            **{name: getattr(estimate, name) for name in OffPolicyEstimate.__struct_fields__},
            version=version,
            experience=experience_key,
            n_bootstrap=settings.n_bootstrap,
            clip=settings.clip,
        )
