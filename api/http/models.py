"""Model routes (admin): register, list, activate and roll back segment models and bandit policies,
and evaluate a policy off-policy on logged traffic before activating it.

Every version that comes in — the card's in an upload, the body of an activate or roll-back, a URL
path — is checked for shape first (:mod:`personalization.models.versions`: a 400 naming the field);
an upload of a version that is registered already is a 409, never a replacement; a model file whose
zip would unpack beyond the bounds (:mod:`personalization.models.archive`) is a 422, unread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from litestar import Controller
from litestar.datastructures import State, UploadFile
from litestar.params import FromPath, JSONBody, MultipartBody
from msgspec import Meta, Struct

from api.http.auth import requires_admin
from api.http.common import runtime_of
from api.http.handlers import get, post, put
from api.http.schemas import ActivateModel, ModelInfo, ModelList
from personalization.errors import Unusable
from personalization.models.evaluation import evaluate_served
from personalization.models.files import ModelLoadError
from personalization.models.ope import OffPolicyEstimate
from personalization.models.policy import PolicyCard
from personalization.models.registry import SEGMENTS_SLOT, RegisteredModel
from personalization.models.versions import check_version

__all__ = [
    "ModelController",
    "ModelUpload",
    "MAX_MODEL_BYTES",
    "MAX_BOOTSTRAP",
    "EvaluateRequest",
    "ModelEvaluation",
]

MAX_MODEL_BYTES = 64 * 1024 * 1024
#: Bootstrap resamples an evaluate request may ask for: the work grows linearly with it.
MAX_BOOTSTRAP = 2000


class EvaluateRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Optional settings of ``POST /v1/models/{version}/evaluate``; the body may be omitted."""

    n_bootstrap: Annotated[int, Meta(ge=1, le=MAX_BOOTSTRAP)] = 500
    #: Clip importance weights at this value (``null``: no clipping).
    clip: Annotated[float, Meta(gt=0)] | None = None


class ModelEvaluation(OffPolicyEstimate, frozen=True, kw_only=True):
    """The :class:`~personalization.models.ope.OffPolicyEstimate` of a policy, and what it was evaluated on."""

    version: str
    experience: str | None
    n_bootstrap: int
    clip: float | None


@dataclass
class ModelUpload:
    """``multipart/form-data`` with the skops file as ``model`` and its card (JSON) as ``card``."""

    model: UploadFile
    card: UploadFile


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


def _registry(state: State):  # noqa: ANN202 - the registry type is internal
    runtime = runtime_of(state)
    assert runtime.models is not None
    return runtime.models


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
        return _info(model, await registry.active_versions())

    @put("/active", summary="Activate (or roll back to) a version")
    async def activate(self, state: State, data: JSONBody[ActivateModel]) -> ModelInfo:
        """Every worker switches within a moment (pub/sub); requests in flight finish on the old model."""
        registry = _registry(state)
        model = await registry.activate(data.version)
        runtime = runtime_of(state)
        await runtime.switch_model(model.slot, model.version)  # this worker at once; the others via pub/sub
        return _info(model, await registry.active_versions())

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
