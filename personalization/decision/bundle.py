"""The decision bundle: everything ``decide()`` reads, as one public document, and deciding from it.

Why a bundle: a front end, an edge function or a Python web app can then make exactly Vary's
decision with no network call (issue 25). "Exactly" is by construction, not by care:

* :func:`build_bundle` serialises the SAME objects the server decides with — the snapshot's
  :class:`~personalization.types.Experience` Structs with the live pauses and phases laid over
  them (:class:`~personalization.decision.live_state.LiveCatalog`), the active
  :class:`~personalization.decision.segments.CompiledSegmentModel` (its folded intercepts and
  per-key weights) and each bandit's :class:`~personalization.decision.policy.CompiledRewardModel`;
* :class:`BundleDecider` turns a bundle back into those objects and calls the same
  :func:`~personalization.decision.decide.decide`; the Python SDK is this module, and the JS SDK
  ports the functions it names (``docs/decisions.md``, "Local evaluation").

Left out, on purpose: experiences that have not started (their set-up is not public before launch),
shadow policies (logged by the server only) and plugins' feature extractors (code, not data). An
entry whose experiences need a plugin's experience type is listed in :attr:`Bundle.server_only`:
a local evaluator must ask the server for it.

Pure: no I/O. Encoding, signing, caching and HTTP live in ``api/``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated

import msgspec
from msgspec import Meta, Struct

from personalization.decision.decide import EntryRequest, Outcome, decide
from personalization.decision.global_holdout import GLOBAL_EXPERIENCE
from personalization.decision.policy import CompiledRewardModel
from personalization.decision.segments import CompiledSegmentModel
from personalization.seams import RewardModel, SegmentModel
from personalization.types import (
    Experience,
    Exposure,
    Id,
    Profile,
    Visitor,
    new_exposure_id,
)

__all__ = [
    "BANDIT_PROPENSITY_TOLERANCE",
    "BUNDLE_FORMAT",
    "Bundle",
    "BundleDecider",
    "BundlePolicy",
    "BundleSegmentModel",
    "BundleUnavailable",
    "LocalDecision",
    "PolicyCard",
    "SegmentCard",
    "build_bundle",
    "bundle_version",
    "check_local",
    "decode_bundle",
    "entry_exposure",
    "global_exposure",
    "local_exposure_id",
    "local_global_exposure_id",
]

#: Incremented on any change a reader of an older format would misread.
BUNDLE_FORMAT = 1
#: Experience types the bundle's evaluators implement; any other is a plugin's (server only).
LOCAL_TYPES = frozenset({"personalization", "ab_test", "bandit"})


class BundleUnavailable(ValueError):
    """The served state cannot be expressed as a bundle (e.g. a segment model that is not compiled)."""


class SegmentCard(Struct, frozen=True, kw_only=True):
    """The two fields of a model card that scoring reads (``version`` is logged, ``segments`` named)."""

    version: str
    segments: tuple[str, ...]


class BundleSegmentModel(Struct, frozen=True, kw_only=True):
    """The active segment model, compiled: P(segment j) = σ(intercepts[j] + Σ weights[key][j]·x).

    The scaler is folded in (:class:`~personalization.decision.segments.CompiledSegmentModel`):
    ``weights`` maps each vocabulary key — ``name`` for a number, ``name=value`` for a category —
    to its per-segment weights, in ``segments`` order.
    """

    version: str
    segments: tuple[str, ...]
    intercepts: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]


class PolicyCard(Struct, frozen=True, kw_only=True):
    """What :class:`~personalization.decision.policy.CompiledRewardModel` reads off its card."""

    version: str
    n_actions: int
    #: Logged rows per variant the model was fitted on (Thompson evidence and the budget's decay).
    actions: tuple[float, ...] = ()


class BundlePolicy(Struct, frozen=True, kw_only=True):
    """One bandit's reward model, compiled: P(reward | x, a) = σ(intercepts[a] + Σ weights[key][a]·x).

    Exploration settings (``bandit_method``, ``epsilon``, ``min_probability``) are the experience's.
    """

    version: str
    n_actions: int
    actions: tuple[float, ...]
    intercepts: tuple[float, ...]
    weights: dict[str, tuple[float, ...]]


class Bundle(Struct, frozen=True, kw_only=True):
    """Everything needed to decide locally, for one locale. All of it is public by design.

    ``experiences``: by key, with live ``paused`` (variant → reason) and ``phase``. ``entries``:
    each baseline entry id → the keys of its experiences in priority order. ``fields`` (only with
    ``fields=true``): entry id → its fields in ``locale``, for baselines and variants alike.
    """

    format: int = BUNDLE_FORMAT
    #: Content version + model versions + live state, hashed: equal bundles have equal versions.
    version: str
    content_version: str
    model_version: str | None = None
    policy_versions: dict[str, str] = {}
    created_at: float
    locale: str | None = None
    global_holdout: float = 0.0
    experiences: dict[str, Experience] = {}
    entries: dict[str, tuple[str, ...]] = {}
    segment_model: BundleSegmentModel | None = None
    policies: dict[str, BundlePolicy] = {}
    #: Entries whose decision needs a plugin's experience type: decide them on the server.
    server_only: tuple[str, ...] = ()
    fields: dict[str, msgspec.Raw] | None = None


def _segment_model(model: SegmentModel | None) -> BundleSegmentModel | None:
    if model is None:
        return None
    if not isinstance(model, CompiledSegmentModel):
        raise BundleUnavailable(
            f"the active segment model {model.version!r} is not a compiled linear model, "
            "so it cannot be evaluated outside Vary"
        )
    return BundleSegmentModel(
        version=model.version,
        segments=tuple(model.segments),
        intercepts=tuple(model.intercepts),
        weights=dict(model.weights),
    )


def _policy(key: str, model: RewardModel) -> BundlePolicy:
    if not isinstance(model, CompiledRewardModel):
        raise BundleUnavailable(
            f"the policy {model.version!r} of {key!r} is not a compiled linear model, "
            "so it cannot be evaluated outside Vary"
        )
    actions = tuple(float(r) for r in getattr(model.card, "actions", ()) or ())
    return BundlePolicy(
        version=model.version,
        n_actions=model.n_actions,
        actions=actions,
        intercepts=tuple(model.intercepts),
        weights=dict(model.weights),
    )


def bundle_version(
    content_version: str,
    model_version: str | None,
    policy_versions: Mapping[str, str],
    experiences: Mapping[str, Experience],
    global_holdout: float,
) -> str:
    """A short hash of what the bundle decides with: content, models and the live state in it.

    The live state (pauses, phases) and the set of started experiences are part of
    ``experiences``, so a guardrail pause or an experience's start gives a new version.
    """
    live = sorted(
        (key, experience.phase, sorted(experience.paused.items())) for key, experience in experiences.items()
    )
    material = msgspec.json.encode(
        [BUNDLE_FORMAT, content_version, model_version, sorted(policy_versions.items()), live, global_holdout]
    )
    return hashlib.sha256(material).hexdigest()[:20]


def build_bundle(
    *,
    content_version: str,
    experiences_by_entry: Mapping[str, Sequence[Experience]],
    model: SegmentModel | None,
    policies: Mapping[str, RewardModel],
    global_holdout: float,
    now: float,
    locale: str | None = None,
    fields: Callable[[str], msgspec.Raw | None] | None = None,
) -> Bundle:
    """The bundle of the served state at ``now``.

    ``experiences_by_entry``: each entry's experiences as ``decide()`` gets them (the live catalog:
    pauses and phases laid over). Experiences not started at ``now`` are left out (an experience
    starting later changes :func:`bundle_version`, so caches keyed by it stay right). ``fields``:
    entry id → its fields in ``locale`` (``None``: leave fields out).
    """
    experiences: dict[str, Experience] = {}
    entries: dict[str, tuple[str, ...]] = {}
    server_only: list[str] = []
    for entry_id in sorted(experiences_by_entry):
        keys: list[str] = []
        for experience in experiences_by_entry[entry_id]:
            if experience.starts_at is not None and now < experience.starts_at:
                continue
            experiences.setdefault(experience.key, experience)
            keys.append(experience.key)
            if experience.type not in LOCAL_TYPES and entry_id not in server_only:
                server_only.append(entry_id)
        if keys:
            entries[entry_id] = tuple(keys)
    used = {key for key, experience in experiences.items() if experience.type == "bandit"}
    bundle_policies = {key: _policy(key, policy) for key, policy in sorted(policies.items()) if key in used}
    segment_model = _segment_model(model)
    policy_versions = {key: policy.version for key, policy in bundle_policies.items()}
    model_version = segment_model.version if segment_model is not None else None
    field_map: dict[str, msgspec.Raw] | None = None
    if fields is not None:
        field_map = {}
        for entry_id, keys in entries.items():
            for entry in (entry_id, *(v for key in keys for v in experiences[key].variants)):
                if entry not in field_map:
                    raw = fields(entry)
                    if raw is not None:
                        field_map[entry] = raw
    return Bundle(
        version=bundle_version(content_version, model_version, policy_versions, experiences, global_holdout),
        content_version=content_version,
        model_version=model_version,
        policy_versions=policy_versions,
        created_at=now,
        locale=locale,
        global_holdout=global_holdout,
        experiences=experiences,
        entries=entries,
        segment_model=segment_model,
        policies=bundle_policies,
        server_only=tuple(server_only),
        fields=field_map,
    )


class BundleDecider:
    """A bundle turned back into the objects ``decide()`` takes, built once, then decided from.

    ``decide()`` here is :func:`personalization.decision.decide.decide` itself with the bundle's
    compiled models: what the Python SDK runs and what ``POST /v1/exposures`` recomputes local
    decisions with.
    """

    __slots__ = ("_requests", "bundle", "model", "policies")

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        spec = bundle.segment_model
        self.model: CompiledSegmentModel[SegmentCard] | None = (
            None
            if spec is None
            else CompiledSegmentModel(
                SegmentCard(version=spec.version, segments=spec.segments), spec.intercepts, dict(spec.weights)
            )
        )
        self.policies: dict[str, CompiledRewardModel[PolicyCard]] = {
            key: CompiledRewardModel(
                PolicyCard(version=p.version, n_actions=p.n_actions, actions=p.actions), p.intercepts, dict(p.weights)
            )
            for key, p in bundle.policies.items()
        }
        experiences = bundle.experiences
        self._requests: dict[str, tuple[Experience, ...]] = {
            entry_id: tuple(experiences[key] for key in keys) for entry_id, keys in bundle.entries.items()
        }

    @property
    def version(self) -> str:
        return self.bundle.version

    def experiences_for(self, entry_id: str) -> tuple[Experience, ...]:
        """The entry's experiences in priority order (a :class:`~personalization.seams.Catalog`)."""
        return self._requests.get(entry_id, ())

    def decide(
        self,
        visitor: Visitor,
        entry_ids: Sequence[str],
        now: float,
        profile: Profile | None = None,
        new_id: Callable[[], str] = new_exposure_id,
    ) -> Outcome:
        """``decide()`` over the bundle: the same function, objects and order as the server.

        Like :meth:`personalization.service.Personalizer.personalize`, the profile's remembered traits
        are laid under the visitor's own (``{**profile.traits, **visitor.traits}``) before deciding.
        """
        known = profile if profile is not None else Profile()
        if known.traits:
            visitor = msgspec.structs.replace(visitor, traits={**known.traits, **visitor.traits})
        return decide(
            visitor,
            known,
            [EntryRequest(entry_id, self.experiences_for(entry_id)) for entry_id in entry_ids],
            self.model,
            now,
            new_id=new_id,
            policies=self.policies,
            global_holdout=self.bundle.global_holdout,
        )


BUNDLE_DECODER = msgspec.json.Decoder(Bundle)


def decode_bundle(data: bytes | str) -> Bundle:
    """A bundle from its JSON bytes (msgspec validates every field's type)."""
    return BUNDLE_DECODER.decode(data)


# ------------------------------------------------------------------------------------------------
# Decisions made locally, sent back as exposures


class LocalDecision(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One decision an SDK made from a bundle, as ``POST /v1/exposures`` takes it (``decisions``).

    It carries its inputs — the visitor and the profile it used, the time — so the server can make
    the same decision again from the bundle named by ``bundle_version`` and accept it only if the
    variant and propensity agree (:func:`check_local`).
    """

    bundle_version: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="The `version` of the bundle the SDK decided from; the server decides again from that "
            "bundle.",
        ),
    ]
    ts: Annotated[float, Meta(description="The `now` the decision used, in Unix seconds.")]
    visitor: Annotated[
        Visitor, Meta(description="The visitor the SDK decided for: id and request-time context, as sent.")
    ]
    profile: (
        Annotated[
            Profile,
            Meta(
                description="The profile the SDK decided with (counters, sticky assignments, frequency counts); "
                "null: a new visitor."
            ),
        ]
        | None
    ) = None
    entry_id: Annotated[Id, Meta(description="The baseline entry the decision is for.")]
    experience: (
        Annotated[
            str,
            Meta(
                max_length=256,
                description="The key of the experience that decided the entry; null: no experience applied "
                "(the baseline is served). `_global` (optional: the server derives it): the global holdout's arm.",
            ),
        ]
        | None
    ) = None
    variant: Annotated[
        int,
        Meta(ge=0, le=1000, description="The variant served: 0 is the baseline (control), 1… the experience's variants."),
    ]
    propensity: Annotated[
        float,
        Meta(
            ge=0.0,
            le=1.0,
            description="The probability (0–1) with which the decision picked this variant; must match the "
            "server's exactly (bandits: within a relative 1e-9).",
        ),
    ]


#: How far a bandit's propensity from an SDK may differ from the server's, relative (last-bit rounding of
#: ``exp``/``erfc`` across math libraries; measured |Δ| < 1e-15). Hashed experiences must match exactly.
BANDIT_PROPENSITY_TOLERANCE = 1e-9


def local_exposure_id(decision: LocalDecision) -> str:
    """A stable id for a local decision, so the same decision sent twice is recorded once."""
    material = "\x00".join(
        (decision.bundle_version, decision.visitor.id, decision.entry_id, repr(decision.ts))
    )
    return "l" + hashlib.sha256(material.encode()).hexdigest()[:23]


def local_global_exposure_id(decision: LocalDecision) -> str:
    """The id of the ``_global`` exposure of the local ``decide()`` call ``decision`` came from.

    Why no entry in it: the server logs one ``_global`` exposure per ``/v1/personalize`` request, and a
    local call's decisions share (bundle version, visitor id, ``ts``). Whichever of them arrives first,
    in one batch or several, claims this id; the others find it taken, so a page view counts once."""
    material = "\x00".join((decision.bundle_version, decision.visitor.id, repr(decision.ts), GLOBAL_EXPERIENCE))
    return "l" + hashlib.sha256(material.encode()).hexdigest()[:23]


def check_local(decider: BundleDecider, decision: LocalDecision) -> tuple[Outcome | None, str | None]:
    """Recompute ``decision`` from its bundle: ``(outcome, None)`` when it agrees, else ``(None, why)``.

    Agreement: the same experience and variant, and the same propensity — exactly for hashed
    experiences (weights arithmetic, the same in every language), within
    :data:`BANDIT_PROPENSITY_TOLERANCE` (relative) for bandits, whose propensities go through
    ``exp``/``erfc``, which a JavaScript engine or another libm may round differently in the last
    bit. The outcome's exposures are the ones to record — what the server itself would have logged
    for this decision (segments, model version, phase): :func:`entry_exposure`, and
    :func:`global_exposure` with the id :func:`local_global_exposure_id`. An item of experience
    ``_global`` (the global holdout's arm, which the server derives itself) must match that exposure.
    """
    ids = iter((local_exposure_id(decision), local_global_exposure_id(decision)))
    outcome = decider.decide(decision.visitor, [decision.entry_id], decision.ts, decision.profile, new_id=ids.__next__)
    if decision.experience == GLOBAL_EXPERIENCE:
        return _check_global(outcome, decision)
    made = outcome.decisions[0]
    if made.experience != decision.experience:
        return None, (
            f"inconsistent: the bundle decides experience {made.experience!r} for this visitor and entry, "
            f"not {decision.experience!r}"
        )
    if made.variant != decision.variant:
        return None, f"inconsistent: the bundle decides variant {made.variant}, not {decision.variant}"
    experience = decider.bundle.experiences.get(made.experience or "")
    tolerance = BANDIT_PROPENSITY_TOLERANCE if experience is not None and experience.type == "bandit" else 0.0
    if made.propensity != decision.propensity and not math.isclose(
        made.propensity, decision.propensity, rel_tol=tolerance, abs_tol=0.0
    ):
        return None, (
            f"inconsistent: the bundle gives variant {made.variant} propensity {made.propensity!r}, "
            f"not {decision.propensity!r}"
        )
    return outcome, None


def _check_global(outcome: Outcome, decision: LocalDecision) -> tuple[Outcome | None, str | None]:
    """A ``_global`` item against the recomputed global-holdout exposure: arm and propensity exactly
    (``s`` and ``1 − s`` are the same float in every language)."""
    made = global_exposure(outcome)
    if made is None:
        return None, (
            f"inconsistent: the bundle logs no {GLOBAL_EXPERIENCE!r} exposure for this visitor "
            "(no global holdout, or no consent to personalization)"
        )
    if made.variant != decision.variant:
        arm = "held out" if made.holdout else "treated"
        return None, (
            f"inconsistent: the bundle puts this visitor in {GLOBAL_EXPERIENCE!r} variant {made.variant} ({arm}), "
            f"not {decision.variant}"
        )
    if made.propensity != decision.propensity:
        return None, (
            f"inconsistent: the bundle gives {GLOBAL_EXPERIENCE!r} variant {made.variant} propensity "
            f"{made.propensity!r}, not {decision.propensity!r}"
        )
    return outcome, None


def entry_exposure(outcome: Outcome) -> Exposure:
    """The recomputed decision's entry exposure."""
    return outcome.exposures[0]


def global_exposure(outcome: Outcome) -> Exposure | None:
    """The recomputed decision's ``_global`` exposure, as ``/v1/personalize`` would log it for the same
    visitor; ``None`` without a global holdout or without consent to personalization."""
    last = outcome.exposures[-1]
    return last if last.experience == GLOBAL_EXPERIENCE and len(outcome.exposures) > 1 else None
