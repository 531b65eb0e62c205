"""Shadow mode: what a candidate bandit policy would have chosen, beside the live one that serves.

A candidate policy is judged best on the very decisions the live one makes. So for every decision of
a ``bandit`` experience with a shadow, :func:`shadow_choice` runs the candidate's compiled reward
model on the same context, turns its predictions into serving probabilities with the experience's
own exploration settings (:func:`~personalization.decision.policy.action_probabilities`, the call
serving makes), and draws with the SAME hash-derived uniform the live policy draws with
(:func:`~personalization.decision.policy.uniform_from_key` of experience key and visitor id). Two
equal policies therefore always agree, and the agreement rate of two different ones measures how
differently they would serve — not the noise of two independent draws. The result goes on the
exposure (``shadow_version``, ``shadow_variant``, ``shadow_propensity``: the candidate's probability
of its own choice) and nothing else changes: the live policy's variant is served and logged.

Cost: one pass over the context's features (k per-variant weights each) and the quadrature of the
serving distribution, in the process, with no extra round trip to Redis.
"""

from __future__ import annotations

from msgspec import Struct

from personalization.decision.policy import (
    action_probabilities,
    choose_action,
    uniform_from_key,
)
from personalization.seams import FeatureRow, RewardModel
from personalization.types import Experience

__all__ = ["ShadowChoice", "shadow_choice"]


class ShadowChoice(Struct, frozen=True, kw_only=True):
    """The shadow policy's version, the variant it would have served and its probability of it."""

    version: str
    variant: int
    propensity: float


def shadow_choice(
    experience: Experience, visitor_id: str, context: FeatureRow, model: RewardModel
) -> ShadowChoice | None:
    """What ``model`` would have served this visitor; ``None`` when it scores another number of
    variants than the experience has (a candidate trained for an older set-up cannot be compared)."""
    k = len(experience.variants) + 1
    if model.n_actions != k:
        return None
    probabilities = action_probabilities(
        model.predict(context),
        experience.bandit_method,
        epsilon=experience.epsilon,
        min_probability=experience.min_probability,
    )
    variant = choose_action(probabilities, uniform_from_key(experience.key, visitor_id))
    return ShadowChoice(version=model.version, variant=variant, propensity=probabilities[variant])
