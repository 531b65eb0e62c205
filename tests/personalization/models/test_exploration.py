"""Exploration as a budget (#21): at most ε_n of traffic off the predicted best, whatever k is.

The served policy's TRUE value is measured on a seeded synthetic world with known reward rates
(:mod:`personalization.demo.logged_bandit`), against the greedy policy of the same reward model.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from personalization.decision.policy import (
    BUDGET_ROWS,
    RewardPredictions,
    action_probabilities,
    choose_action,
    exploration_budget,
    exploration_floor,
    uniform_from_key,
)
from personalization.decision.selection import assign_bandit
from personalization.demo.logged_bandit import (
    feature_rows,
    make_world,
    relative_position,
)
from personalization.models.policy import compile_policy, train_reward_model
from personalization.types import Experience

KS = (2, 3, 5, 10, 20, 37, 50, 100)


def bandit(k: int, **kw: object) -> Experience:
    return Experience(
        id=f"id-b{k}", key=f"b{k}", name=f"b{k}", type="bandit",
        variants=tuple(f"v{a}" for a in range(1, k)), weights=tuple(1.0 / k for _ in range(k)), **kw,  # type: ignore[arg-type]
    )


def test_budget_decays_as_one_over_root_n() -> None:
    assert exploration_budget(0.1, None) == 0.1
    assert exploration_budget(0.1, BUDGET_ROWS / 2) == 0.1  # the full budget until n₀ rows
    assert exploration_budget(0.1, 4 * BUDGET_ROWS) == pytest.approx(0.05)
    assert exploration_budget(0.1, 100 * BUDGET_ROWS) == pytest.approx(0.01)
    assert exploration_floor(0.05, 0.1, 100) == pytest.approx(0.0005)
    assert exploration_floor(0.001, 0.1, 2) == 0.001


@pytest.mark.parametrize("method", ["thompson", "epsilon_greedy"])
@pytest.mark.parametrize("k", KS)
def test_probabilities_sum_to_one_and_keep_to_the_budget(method: str, k: int) -> None:
    rng = random.Random(k)
    for _ in range(40):
        predictions = [rng.choice([rng.random() * 0.3, rng.random() ** 4, 0.1]) for _ in range(k)]
        rows = [rng.choice([0, 5, 200, 5000]) for _ in range(k)]
        epsilon, floor = rng.choice([0.0, 0.05, 0.1, 0.3, 1.0]), rng.choice([0.0, 0.01, 0.05, 0.5])
        got = action_probabilities(RewardPredictions(predictions, rows), method, epsilon=epsilon, min_probability=floor)
        budget = exploration_budget(epsilon, sum(rows))
        top = max(predictions)
        assert len(got) == k
        assert math.fsum(got) == pytest.approx(1.0, abs=1e-12)
        assert min(got) >= exploration_floor(floor, budget, k) - 1e-15
        assert math.fsum(p for p, q in zip(got, predictions) if q != top) <= budget + 1e-12
        assert k * exploration_floor(floor, budget, k) < 1.0 or k == 1


def test_decay_uses_the_rows_the_predictions_carry() -> None:
    predictions = [0.120, 0.121, 0.122, 0.123]  # so close that Thompson sampling wants more than ε_n
    plain = action_probabilities(predictions)  # rows unknown: ε itself, 100 rows per prediction
    assert 1.0 - plain[3] == pytest.approx(0.1)
    carried = action_probabilities(RewardPredictions(predictions, [40_000] * 4))
    assert 1.0 - carried[3] == pytest.approx(exploration_budget(0.1, 160_000))
    no_decay = action_probabilities(RewardPredictions(predictions, [40_000] * 4), decay=False)
    assert 1.0 - no_decay[3] == pytest.approx(0.1)
    # a confident posterior explores less than the budget allows
    sure = action_probabilities(RewardPredictions([0.05, 0.30], [40_000, 40_000]), epsilon=1.0, min_probability=0.0)
    assert sure[1] > 0.999
    assert action_probabilities([0.1, 0.3, 0.2], epsilon=0.0) == [0.0, 1.0, 0.0]  # ε = 0: greedy


@pytest.mark.parametrize("k", (2, 10, 100))
def test_the_logged_propensity_is_exactly_the_served_probability(k: int) -> None:
    world = make_world(k, 3, seed=k)
    sample = world.log(3_000, seed=k)
    pipeline, card = train_reward_model(feature_rows(sample.contexts), sample.actions, sample.rewards, k)
    policy = compile_policy(pipeline, card)
    experience = bandit(k)
    for i, row in enumerate(feature_rows(world.contexts(100, seed=7))):
        assignment = assign_bandit(experience, f"visitor-{i}", row, policy)
        probabilities = action_probabilities(policy.predict(row))
        assert math.fsum(probabilities) == pytest.approx(1.0, abs=1e-12)
        assert assignment.variant == choose_action(probabilities, uniform_from_key(experience.key, f"visitor-{i}"))
        assert assignment.propensity == probabilities[assignment.variant]  # bit for bit


@pytest.mark.parametrize("k", (2, 10, 100))
def test_served_policy_is_within_five_percent_of_greedy_after_10k_rows(k: int) -> None:
    world = make_world(k, 3, seed=k)
    sample = world.log(10_000, seed=k)
    pipeline, card = train_reward_model(feature_rows(sample.contexts), sample.actions, sample.rewards, k)
    policy = compile_policy(pipeline, card)
    contexts = world.contexts(1_000, seed=99)
    served, greedy = np.empty((len(contexts), k)), np.zeros((len(contexts), k))
    for i, row in enumerate(feature_rows(contexts)):
        predictions = policy.predict(row)
        served[i] = action_probabilities(predictions)
        greedy[i, int(np.argmax(predictions))] = 1.0
    uniform, oracle = world.bounds(contexts)
    served_position = relative_position(world.value(contexts, served), uniform, oracle)
    greedy_position = relative_position(world.value(contexts, greedy), uniform, oracle)
    assert greedy_position > 0.5  # the model learned something, so the comparison means something
    assert greedy_position - served_position <= 0.05 * greedy_position
    assert served.max(axis=1).mean() > 0.9  # mostly the best variant, never uniform
