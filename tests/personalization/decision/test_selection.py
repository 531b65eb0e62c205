"""Selection: audience first-match, traffic allocation, holdout, weights, sticky, propensities."""

from __future__ import annotations

import pytest

from personalization.decision.selection import (
    HOLDOUT_STICKY,
    assign_bandit,
    assign_variant,
    select_experience,
    variant_propensity,
)
from personalization.types import Audience, Experience


def _exp(key: str = "exp", **kw: object) -> Experience:
    base: dict[str, object] = dict(
        id=f"id-{key}", key=key, name=key, type="ab_test", variants=("b", "c"), weights=(1 / 3, 1 / 3, 1 / 3)
    )
    base.update(kw)
    return Experience(**base)  # type: ignore[arg-type]


def test_assignment_is_deterministic_and_roughly_follows_weights() -> None:
    exp = _exp(weights=(0.5, 0.3, 0.2))
    counts = [0, 0, 0]
    for i in range(6000):
        first = assign_variant(exp, f"visitor-{i}")
        assert assign_variant(exp, f"visitor-{i}") == first
        counts[first.variant] += 1
    shares = [c / 6000 for c in counts]
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.03)


def test_traffic_allocation_leaves_the_rest_out_of_the_experience() -> None:
    exp = _exp(traffic_allocation=0.5, variants=("b",), weights=(0.5, 0.5))
    outcomes = [assign_variant(exp, f"v{i}") for i in range(4000)]
    out = [o for o in outcomes if o.experience is None]
    assert len(out) / 4000 == pytest.approx(0.5, abs=0.04)
    assert all(o.variant == 0 and o.propensity == 1.0 and "traffic allocation" in o.reason for o in out)


def test_holdout_is_flagged_control_with_its_propensity() -> None:
    exp = _exp(holdout=0.2, variants=("b",), weights=(0.0, 1.0), type="personalization")
    outcomes = [assign_variant(exp, f"v{i}") for i in range(5000)]
    held = [o for o in outcomes if o.holdout]
    assert len(held) / 5000 == pytest.approx(0.2, abs=0.03)
    assert all(o.variant == 0 for o in held)
    assert held[0].propensity == pytest.approx(0.2)
    served = [o for o in outcomes if not o.holdout]
    assert all(o.variant == 1 and o.propensity == pytest.approx(0.8) for o in served)


def test_propensities_of_all_variants_sum_to_one() -> None:
    exp = _exp(holdout=0.1, weights=(0.2, 0.5, 0.3))
    total = variant_propensity(exp, 0, False) + variant_propensity(exp, 1, False) + variant_propensity(exp, 2, False)
    assert total == pytest.approx(1.0)


def test_sticky_assignment_wins_over_changed_weights() -> None:
    exp = _exp(weights=(1.0, 0.0, 0.0))
    sticky = assign_variant(exp, "v1", sticky=2)
    assert sticky.variant == 2 and "sticky" in sticky.reason
    held = assign_variant(exp, "v1", sticky=HOLDOUT_STICKY)
    assert held.holdout and held.variant == 0
    # A sticky variant that no longer exists falls back to hashing.
    assert assign_variant(exp, "v1", sticky=7).variant == 0


def test_first_matching_audience_decides_and_reason_explains() -> None:
    sale = Audience(id="a1", key="price", name="Price sensitive", condition={"segments.price_sensitive": {"$gte": 0.6}})
    na = Audience(id="a2", key="na", name="North America", condition={"country": {"$in": ["CA", "US"]}})
    first = _exp("sale", type="personalization", variants=("s",), weights=(0.0, 1.0), audience=sale)
    second = _exp("na", type="personalization", variants=("n",), weights=(0.0, 1.0), audience=na)
    attrs = {"country": "US", "segments": {"price_sensitive": 0.81}}
    chosen = select_experience([first, second], attrs, "v1", {}, now=0.0)
    assert chosen.experience is first and chosen.variant == 1
    assert "Price sensitive" in chosen.reason and "0.81" in chosen.reason
    attrs = {"country": "US", "segments": {"price_sensitive": 0.2}}
    chosen = select_experience([first, second], attrs, "v1", {}, now=0.0)
    assert chosen.experience is second and "North America" in chosen.reason
    nobody = select_experience([first, second], {"country": "DE", "segments": {}}, "v1", {}, now=0.0)
    assert nobody.experience is None and "not in audience" in nobody.reason


def test_schedule_is_respected() -> None:
    exp = _exp(starts_at=100.0, ends_at=200.0)
    assert select_experience([exp], {}, "v", {}, now=50.0).experience is None
    assert select_experience([exp], {}, "v", {}, now=150.0).experience is exp
    assert "not running" in select_experience([exp], {}, "v", {}, now=250.0).reason


def test_bandit_without_policy_is_uniform_with_exact_propensity() -> None:
    exp = _exp("bandit", type="bandit")
    outcomes = [assign_bandit(exp, f"v{i}", {"channel": "web"}, None) for i in range(3000)]
    assert all(o.propensity == pytest.approx(1 / 3) for o in outcomes)
    shares = [sum(o.variant == k for o in outcomes) / 3000 for k in range(3)]
    assert shares == pytest.approx([1 / 3] * 3, abs=0.04)
    assert "uniform" in outcomes[0].reason
    assert assign_bandit(exp, "v1", {"channel": "web"}, None) == outcomes[1]  # reproducible


def test_bandit_with_a_learned_policy_favours_the_better_variant() -> None:
    import numpy as np

    from personalization.models.policy import compile_policy, train_reward_model

    rng = np.random.default_rng(0)
    contexts, actions, rewards = [], [], []
    for _ in range(3000):
        channel = str(rng.choice(["web", "ios"]))
        action = int(rng.integers(0, 3))
        best = 2 if channel == "ios" else 1
        rewards.append(float(rng.random() < (0.30 if action == best else 0.05)))
        contexts.append({"channel": channel})
        actions.append(action)
    pipeline, card = train_reward_model(contexts, np.array(actions), np.array(rewards), 3, experience="bandit")
    policy = compile_policy(pipeline, card)
    exp = _exp("bandit", type="bandit", min_probability=0.05)
    ios = [assign_bandit(exp, f"v{i}", {"channel": "ios"}, policy) for i in range(2000)]
    share_best = sum(o.variant == 2 for o in ios) / len(ios)
    assert share_best > 0.7
    # #21: the floor is min(min_probability, ε_n/2k), ε_n the budget decayed by the training rows
    from personalization.decision.policy import exploration_budget, exploration_floor

    floor = exploration_floor(0.05, exploration_budget(exp.epsilon, sum(card.actions)), 3)
    assert 0.0 < floor < 0.05
    assert all(floor - 1e-9 <= o.propensity <= 1 for o in ios)
    assert policy.version in ios[0].reason
    # the logged propensity is the policy's probability of the chosen variant
    chosen = ios[0]
    same = assign_bandit(exp, "v0", {"channel": "ios"}, policy)
    assert same.propensity == chosen.propensity
