"""The compiled segment model's zero skip (issue 22): same probabilities, bit for bit."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

from personalization.decision.policy import sigmoid
from personalization.decision.segments import CompiledSegmentModel


def _reference(model: CompiledSegmentModel, features: dict[str, object]) -> dict[str, float]:
    """``score`` as it was before zeros were skipped: every matched feature summed in row order."""
    ones = [
        model.weights[f"{k}={v}"] for k, v in features.items() if isinstance(v, str) and f"{k}={v}" in model.weights
    ]
    scaled = [(model.weights[k], v) for k, v in features.items() if not isinstance(v, str) and v is not None
              and k in model.weights]
    out = {}
    for j, segment in enumerate(model.segments):
        z = model.intercepts[j]
        for w in ones:
            z += w[j]
        for w, value in scaled:
            z += w[j] * value  # type: ignore[operator]
        out[segment] = sigmoid(z)
    return out


def _model(weights: dict[str, tuple[float, ...]], intercepts: tuple[float, ...]) -> CompiledSegmentModel:
    card = SimpleNamespace(version="v1", segments=("a", "b"))
    return CompiledSegmentModel(card, intercepts, weights)  # type: ignore[arg-type]


def test_skipping_zero_features_changes_no_bit() -> None:
    rng = random.Random(7)
    for _ in range(300):
        weights = {name: (rng.uniform(-3, 3), rng.uniform(-1e3, 1e3)) for name in ("visits", "conversions", "is_new")}
        weights.update({"channel=web": (rng.uniform(-2, 2), -0.0), "country=US": (0.0, rng.uniform(-2, 2))})
        model = _model(weights, (rng.choice([0.0, -0.0, rng.uniform(-5, 5)]), rng.uniform(-5, 5)))
        features = {
            "channel": "web", "country": rng.choice(["US", "DE"]),
            "visits": rng.choice([0.0, -0.0, 0, 1.0, 2.5]), "conversions": rng.choice([0.0, 3.0, False, True]),
            "is_new": rng.choice([0.0, 1.0]), "unknown": 0.0,
        }
        assert model.score(features) == _reference(model, features)  # type: ignore[arg-type]


def test_with_a_non_finite_weight_zeros_still_count() -> None:
    model = _model({"visits": (math.inf, 1.0)}, (0.0, 0.0))
    scores = model.score({"visits": 0.0})
    assert math.isnan(scores["a"]) and scores["b"] == 0.5  # inf * 0 is NaN, as it always was
