"""The reward model at many variants (#21): time-ordered CV, importance weights, calibration, compiled path."""

from __future__ import annotations

import itertools

import msgspec
import numpy as np
import pytest

from personalization.decision.policy import action_features
from personalization.demo.logged_bandit import feature_rows, make_world
from personalization.models import reward_fit
from personalization.models.policy import (
    PolicyCard,
    compile_policy,
    predict_rewards,
    train_reward_model,
)
from personalization.models.reward_fit import MAX_WEIGHT, importance_weights


@pytest.fixture(scope="module")
def many() -> tuple:
    """50 variants × 20 features, 20,000 rows of a biased logging policy."""
    world = make_world(50, 20, seed=3)
    sample = world.log(20_000, seed=3)
    pipeline, card = train_reward_model(
        feature_rows(sample.contexts), sample.actions, sample.rewards, 50, propensities=sample.propensities,
        created_at=1e9,
    )
    return world, pipeline, card


def test_compiled_path_equals_the_fitted_model_at_50_variants(many: tuple) -> None:
    world, pipeline, card = many
    rows = feature_rows(world.contexts(40, seed=8))
    rows[0] = {}  # nothing known
    rows[1] = {**rows[1], "never-seen": 3.0, "action": "7"}
    grid = [action_features(x, a) for x in rows for a in range(50)]
    expected = pipeline.predict_proba(grid)[:, 1].reshape(len(rows), 50)
    compiled = compile_policy(pipeline, card)
    np.testing.assert_allclose(np.array([compiled.predict(x) for x in rows]), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(predict_rewards(pipeline, rows, 50), expected, rtol=0, atol=1e-9)


def test_the_card_says_what_cross_validation_chose(many: tuple) -> None:
    _, _, card = many
    assert card.fit["C"] in reward_fit.C_GRID
    assert card.fit["weighting"] in ("none", "ipw")
    assert card.fit["calibration_slope"] > 0.0
    assert 0.0 < card.fit["cv_log_loss"] < 1.0
    old = msgspec.json.decode(msgspec.json.encode(card).replace(b'"fit":', b'"ignored":'), type=PolicyCard)
    assert old.fit == {}  # cards written before #21 still load


def test_probabilities_are_calibrated_against_the_true_rates(many: tuple) -> None:
    """Against the TRUE rates under uniform assignment (what the importance-weighted calibration targets)."""
    world, pipeline, card = many
    assert card.fit["calibration_slope"] < 0.8  # 1,000 columns on 16,000 rows: the raw fit is overconfident
    contexts = world.contexts(2_000, seed=11)
    predicted = predict_rewards(pipeline, feature_rows(contexts), 50).ravel()
    true = world.rates(contexts).ravel()
    assert abs(predicted.mean() - true.mean()) < 0.01
    order = np.argsort(predicted)
    deciles = [(predicted[d].mean(), true[d].mean()) for d in np.array_split(order, 10)]
    assert all(abs(p - t) < 0.03 for p, t in deciles)  # mean prediction ≈ mean true rate in every decile
    assert all(low[1] < high[1] for low, high in itertools.pairwise(deciles))


def test_a_calibrated_model_is_left_as_it_is() -> None:
    world = make_world(10, 5, seed=3)
    sample = world.log(20_000, seed=3)
    pipeline, card = train_reward_model(
        feature_rows(sample.contexts), sample.actions, sample.rewards, 10, propensities=sample.propensities
    )
    assert (card.fit["calibration_slope"], card.fit["calibration_intercept"]) == (1.0, 0.0)
    contexts = world.contexts(2_000, seed=11)
    predicted = predict_rewards(pipeline, feature_rows(contexts), 10).ravel()
    true = world.rates(contexts).ravel()
    for decile in np.array_split(np.argsort(predicted), 10):
        assert abs(predicted[decile].mean() - true[decile].mean()) < 0.02


def test_forward_chaining_folds_validate_on_newer_rows_only() -> None:
    folds = reward_fit._blocks(1_000)
    assert len(folds) == reward_fit.CV_FOLDS
    assert folds[0][0] == slice(0, 500) and folds[-1][1].stop == 1_000
    for train, valid in folds:
        assert train.start == 0 and train.stop == valid.start and valid.stop > valid.start


def test_importance_weights() -> None:
    actions = np.array([0, 1, 1, 0, 1])
    weights = importance_weights(actions, [0.5, 0.25, 0.001, float("nan"), 0.0], 2)
    raw = np.array([1.0, 2.0, MAX_WEIGHT, 1.0, 1.0])  # 1/(k·p), clipped; unknown propensities count 1
    np.testing.assert_allclose(weights, raw / raw.mean())
    assert importance_weights(actions, None, 2) is None
    with pytest.raises(ValueError, match="propensities"):
        importance_weights(actions, [0.5], 2)


def _skewed_world(n: int, seed: int) -> tuple:
    """Two variants; variant 1 is good only for |x| > 1.2 (x² is not in a linear model), and the
    logging policy shows it there 95 % of the time and elsewhere 5 %."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2.0, 2.0, n)
    rates = np.stack([np.full(n, 0.3), 1.0 / (1.0 + np.exp(-(1.5 * x * x - 2.5)))], axis=1)
    shown = np.where(np.abs(x) > 1.2, 0.95, 0.05)
    actions = (rng.random(n) < shown).astype(np.int64)
    propensities = np.where(actions == 1, shown, 1.0 - shown)
    rewards = (rng.random(n) < rates[np.arange(n), actions]).astype(np.int64)
    return [{"x": float(v)} for v in x], actions, propensities, rewards, rates


def test_a_biased_logging_policy_does_not_bias_the_model() -> None:
    contexts, actions, propensities, rewards, _ = _skewed_world(20_000, seed=1)
    fresh, _, _, _, rates = _skewed_world(20_000, seed=2)
    true_mean = rates[:, 1].mean()  # variant 1's reward rate over all visitors: ≈ 0.40
    _, plain_card = train_reward_model(contexts, actions, rewards, 2)
    plain, _ = train_reward_model(contexts, actions, rewards, 2)
    weighted, card = train_reward_model(contexts, actions, rewards, 2, propensities=propensities)
    assert plain_card.fit["weighting"] == "none"  # without propensities nothing can be weighted
    assert card.fit["weighting"] in ("none", "ipw")
    unweighted_mean = predict_rewards(plain, fresh, 2)[:, 1].mean()
    weighted_mean = predict_rewards(weighted, fresh, 2)[:, 1].mean()
    assert unweighted_mean - true_mean > 0.2  # the logs' mix: mostly where variant 1 is good
    assert abs(weighted_mean - true_mean) < 0.03
