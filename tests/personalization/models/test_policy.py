"""The learned bandit policy: reward model and card, skops storage, compiled path, probabilities."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import msgspec
import numpy as np
import pytest
import sklearn
import skops.io
from sklearn.pipeline import Pipeline

from personalization.decision import policy as serving
from personalization.decision.policy import (
    CompiledRewardModel,
    action_features,
    action_probabilities,
    choose_action,
    uniform_from_key,
    uniform_policy,
)
from personalization.models import policy
from personalization.models.policy import (
    TRUSTED_TYPES,
    ModelLoadError,
    ModelVersionMismatch,
    PolicyCard,
    UntrustedModelError,
    compile_policy,
    load_policy,
    predict_rewards,
    save_policy,
    train_reward_model,
)
from personalization import seams
from personalization.seams import RewardModel
from tests.personalization.models.skops_files import dump_with_untrusted_step, schema_types

CREATED_AT = 1_748_736_000.0  # 2025-06-01T00:00:00Z
VERSION = re.compile(r"^pol-\d{14}-[0-9a-f]{8}$")
K = 3
CHANNELS = ("web", "ios", "email")
DEVICES = ("mobile", "desktop")


def true_rate(x: dict[str, float | str], a: int) -> float:
    """Variant 1 wins on the web, variant 2 by email, variant 0 for returning visitors."""
    z = -1.2 + {"web": (0.0, 0.8, -0.2), "ios": (0.3, 0.0, 0.1), "email": (0.0, -0.3, 1.0)}[
        str(x["channel"])
    ][a]
    z += (0.2, 0.0, -0.1)[a] * float(x.get("visits", 0.0))
    return 1.0 / (1.0 + math.exp(-z))


def logged_rows(n: int, seed: int) -> tuple[list[dict[str, float | str]], list[int], list[int]]:
    rng = random.Random(seed)
    contexts: list[dict[str, float | str]] = []
    actions, rewards = [], []
    for _ in range(n):
        x: dict[str, float | str] = {
            "channel": rng.choice(CHANNELS),
            "device": rng.choice(DEVICES),
            "visits": float(rng.randint(0, 6)),
        }
        a = rng.randrange(K)
        contexts.append(x)
        actions.append(a)
        rewards.append(int(rng.random() < true_rate(x, a)))
    return contexts, actions, rewards


@pytest.fixture(scope="module")
def data() -> tuple[list[dict[str, float | str]], list[int], list[int]]:
    return logged_rows(3000, seed=7)


@pytest.fixture(scope="module")
def trained(data: tuple) -> tuple[Pipeline, PolicyCard]:
    contexts, actions, rewards = data
    return train_reward_model(
        contexts, actions, rewards, K, experience="hero-banner", created_at=CREATED_AT
    )


@pytest.fixture(scope="module")
def compiled(trained: tuple[Pipeline, PolicyCard]) -> CompiledRewardModel:
    return compile_policy(*trained)


def scoring_rows() -> list[dict[str, float | str]]:
    """500 rows: known, unseen categories, unseen features, near-empty, None, reserved names."""
    contexts, _, _ = logged_rows(500, seed=99)
    rng = random.Random(5)
    out: list[dict] = []
    for i, row in enumerate(contexts):
        row = dict(row)
        if i % 5 == 0:
            row.update(channel="kiosk", device="watch", utm_source="never-seen")
        elif i % 5 == 1:
            row = {"channel": rng.choice(["web", "sms"])}
        elif i % 5 == 2:
            row["visits"] = rng.uniform(0.0, 40.0)
            row["trait_vip"] = 1.0
        elif i % 5 == 3:
            row["device"] = None
            row["action"] = "2"  # reserved: dropped on both paths
            row["action=1|channel"] = "web"
        out.append(row)
    out[-1] = {}
    return out


# -- training and the card --------------------------------------------------------------------------


def test_card_describes_the_model(trained: tuple[Pipeline, PolicyCard]) -> None:
    _, card = trained
    assert VERSION.match(card.version)
    assert card.experience == "hero-banner"
    assert card.n_actions == K
    assert card.sklearn_version == sklearn.__version__
    assert card.features == ("channel", "device", "visits")
    assert card.rows == {"train": 2400, "validation": 600}
    assert sum(card.actions) == 2400 and len(card.actions) == K
    assert set(card.metrics) == {"log_loss", "roc_auc", "brier", "positive_rate"}
    assert card.metrics["roc_auc"] > 0.6  # the model learned something real


def test_same_data_same_version(data: tuple, trained: tuple[Pipeline, PolicyCard]) -> None:
    contexts, actions, rewards = data
    _, again = train_reward_model(
        contexts, actions, rewards, K, experience="hero-banner", created_at=CREATED_AT
    )
    assert again.version == trained[1].version
    _, other = train_reward_model(
        contexts, actions, rewards, K, experience="other", created_at=CREATED_AT
    )
    assert other.version != trained[1].version


def test_validation_is_the_newest_rows(data: tuple) -> None:
    contexts, actions, rewards = data
    timestamps = [CREATED_AT - 86_400 * 30 + 600 * i for i in range(len(contexts))]
    _, card = train_reward_model(
        contexts, actions, rewards, K, timestamps=timestamps, created_at=CREATED_AT
    )
    assert card.training_window == {
        "start": "2025-05-02T00:00:00+00:00",
        "end": "2025-05-22T19:50:00+00:00",
    }


def test_learns_per_variant_effects_per_segment(compiled: CompiledRewardModel) -> None:
    web = compiled.predict({"channel": "web", "device": "mobile", "visits": 0.0})
    email = compiled.predict({"channel": "email", "device": "mobile", "visits": 0.0})
    assert max(range(K), key=web.__getitem__) == 1
    assert max(range(K), key=email.__getitem__) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rewards": [2] * 3000}, "0 or 1"),
        ({"actions": [3] * 3000}, r"\[0, 3\)"),
        ({"n_actions": 1}, "≥ 2"),
        ({"rewards": [0] * 3000}, "one reward value"),
        ({"contexts": [{}] * 4}, "4 contexts"),
    ],
)
def test_training_refuses_bad_data(data: tuple, change: dict, message: str) -> None:
    contexts, actions, rewards = data
    args = {"contexts": contexts, "actions": actions, "rewards": rewards, "n_actions": K} | change
    with pytest.raises(ValueError, match=message):
        train_reward_model(**args)


# -- the compiled path ------------------------------------------------------------------------------


def test_compiled_predict_equals_predict_proba(
    trained: tuple[Pipeline, PolicyCard], compiled: CompiledRewardModel
) -> None:
    pipeline, _ = trained
    rows = scoring_rows()
    grid = [action_features(x, a) for x in rows for a in range(K)]
    expected = pipeline.predict_proba(grid)[:, 1].reshape(len(rows), K)
    got = np.array([compiled.predict(x) for x in rows])
    assert got.shape == (500, K)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(predict_rewards(pipeline, rows, K), expected, rtol=0, atol=1e-9)


def test_compiled_model_is_a_reward_model(compiled: CompiledRewardModel) -> None:
    assert isinstance(compiled, RewardModel)
    assert compiled.n_actions == K
    assert compiled.version.startswith("pol-")
    assert "CompiledRewardModel" in repr(compiled)


def test_action_features_cross_every_feature_with_the_variant() -> None:
    row = action_features({"channel": "web", "visits": 2.0, "device": None, "action": "x"}, 1)
    assert row == {
        "action": "1",
        "channel": "web",
        "action=1|channel": "web",
        "visits": 2.0,
        "action=1|visits": 2.0,
    }


# -- action probabilities ---------------------------------------------------------------------------


def test_epsilon_greedy_exact_values() -> None:
    got = action_probabilities([0.2, 0.5, 0.3], "epsilon_greedy", epsilon=0.1, min_probability=0.0)
    assert got == pytest.approx([0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3], abs=1e-15)
    tied = action_probabilities([0.5, 0.1, 0.5], "epsilon_greedy", epsilon=0.3, min_probability=0.0)
    assert tied == pytest.approx([0.1 + 0.35, 0.1, 0.1 + 0.35], abs=1e-15)


def test_floor_raises_the_low_and_rescales_the_rest_proportionally() -> None:
    # #21: the floor is min(min_probability, ε/2k) = 1/60, below ε-greedy's 1/30: nothing to lift.
    got = action_probabilities([0.2, 0.5, 0.3], "epsilon_greedy", epsilon=0.1, min_probability=0.05)
    assert got == pytest.approx([0.1 / 3, 0.9 + 0.1 / 3, 0.1 / 3], abs=1e-15)
    # Water-filling: after lifting the smallest, the next one falls below the floor: lifted too.
    got = serving._apply_floor([0.01, 0.1, 0.89], 0.1)
    assert got == pytest.approx([0.1, 0.1, 0.8], abs=1e-15)
    got = serving._apply_floor([0.02, 0.38, 0.6], 0.1)  # 0.38 and 0.6 share 0.9 in that proportion
    assert got == pytest.approx([0.1, 0.9 * 0.38 / 0.98, 0.9 * 0.6 / 0.98], abs=1e-15)


@pytest.mark.parametrize("method", ["thompson", "epsilon_greedy"])
def test_probabilities_sum_to_one_and_respect_the_floor(method: str) -> None:
    rng = random.Random(11)
    for _ in range(300):
        k = rng.randint(2, 8)
        predictions = [rng.choice([0.0, 1.0, rng.random(), rng.random() ** 6]) for _ in range(k)]
        floor = rng.choice([0.0, 0.01, 0.05, 0.1, 1.0 / k])
        epsilon = rng.random()
        got = action_probabilities(predictions, method, epsilon=epsilon, min_probability=floor)
        assert len(got) == k
        assert math.fsum(got) == pytest.approx(1.0, abs=1e-12)
        # #21: the floor is min(min_probability, ε/2k) (was min_probability, capped at 1/k)
        assert min(got) >= min(floor, epsilon / (2 * k)) - 1e-15


def test_floor_never_makes_the_policy_uniform() -> None:
    # #21 replaces "a floor above 1/k means uniform": the floor is at most ε/2k = 1/60 here, and
    # Thompson sampling is sure the first is best, so the others get just the floor.
    got = action_probabilities([0.9, 0.1, 0.1], min_probability=0.5)
    assert got == pytest.approx([1 - 2 / 60, 1 / 60, 1 / 60], abs=1e-9)
    for k in (20, 50, 100):  # was uniform for every k ≥ 20 with the default floor 0.05
        many = action_probabilities([0.3] + [0.1] * (k - 1), min_probability=0.05)
        assert many[0] > 0.9 and min(many) == pytest.approx(0.1 / (2 * k))


def test_thompson_favours_the_clearly_better_action() -> None:
    # #21: floor min(0.05, ε/2k) = 1/60 (was 0.05 each)
    got = action_probabilities([0.05, 0.40, 0.06], "thompson", min_probability=0.05)
    assert got == pytest.approx([1 / 60, 1 - 2 / 60, 1 / 60], abs=1e-9)
    # ε = 1: no budget binds, so this is Thompson sampling's own P(best) (#21: ε now caps Thompson too)
    close = action_probabilities([0.30, 0.31], "thompson", epsilon=1.0, min_probability=0.0, evidence_rows=100.0)
    assert 0.5 < close[1] < 0.65
    sure = action_probabilities([0.30, 0.31], "thompson", min_probability=0.0, evidence_rows=1e6)
    assert sure[1] > 0.99


def test_thompson_is_deterministic_and_symmetric() -> None:
    predictions = [0.12, 0.15, 0.11, 0.14]
    first = action_probabilities(predictions, "thompson", min_probability=0.0)
    assert action_probabilities(predictions, "thompson", min_probability=0.0) == first
    assert first[1] == pytest.approx(0.9)  # #21: the predicted best keeps 1 − ε
    reversed_ = action_probabilities(predictions[::-1], "thompson", min_probability=0.0)
    assert reversed_[::-1] == pytest.approx(first, abs=1e-12)
    equal = action_probabilities([0.2] * 4, "thompson", min_probability=0.0)
    assert equal == pytest.approx([0.25] * 4)


def test_thompson_matches_monte_carlo() -> None:
    predictions, m = [0.10, 0.13, 0.12], 100.0
    # ε = 1 (no budget binds: #21 caps Thompson's exploration at ε) to check the quadrature itself
    got = action_probabilities(predictions, "thompson", epsilon=1.0, min_probability=0.0, evidence_rows=m)
    mu = (np.array(predictions) * m + 1) / (m + 2)
    draws = np.random.default_rng(0).normal(mu, np.sqrt(mu * (1 - mu) / (m + 3)), size=(400_000, 3))
    frequencies = np.bincount(draws.argmax(axis=1), minlength=3) / len(draws)
    np.testing.assert_allclose(got, frequencies, atol=0.004)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predictions": []}, "no predictions"),
        ({"predictions": [0.1, math.nan]}, "finite"),
        ({"predictions": [0.1, 0.2], "method": "ucb"}, "unknown method"),
        ({"predictions": [0.1, 0.2], "method": "epsilon_greedy", "epsilon": 1.5}, "epsilon"),
        ({"predictions": [0.1, 0.2], "min_probability": -0.1}, "min_probability"),
    ],
)
def test_action_probabilities_refuses_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        action_probabilities(**kwargs)


# -- choosing ---------------------------------------------------------------------------------------


def test_choose_action_follows_the_probabilities() -> None:
    probabilities = [0.05, 0.7, 0.25]
    n = 100_000
    counts = [0] * 3
    for i in range(n):
        counts[choose_action(probabilities, i / n)] += 1
    assert counts == [5000, 70000, 25000]
    hashed = [0] * 3
    for i in range(20_000):
        u = uniform_from_key("hero", f"visitor-{i}", "2025-06-01")
        hashed[choose_action(probabilities, u)] += 1
    np.testing.assert_allclose(np.array(hashed) / 20_000, probabilities, atol=0.01)


def test_choose_action_edges() -> None:
    assert choose_action([0.0, 1.0, 0.0], 0.0) == 1
    assert choose_action([0.5, 0.5, 0.0], math.nextafter(1.0, 0.0)) == 1
    assert choose_action([0.3, 0.3, 0.3999999999], 0.99999999999) == 2
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="u must be"):
            choose_action([1.0], bad)


def test_uniform_from_key_is_stable_and_in_range() -> None:
    u = uniform_from_key("hero", "visitor-1", "2025-06-01")
    assert u == uniform_from_key("hero", "visitor-1", "2025-06-01")
    assert u != uniform_from_key("hero", "visitor-1", "2025-06-02")
    assert uniform_from_key("a", "bc") != uniform_from_key("ab", "c")
    assert all(0.0 <= uniform_from_key(str(i)) < 1.0 for i in range(1000))


def test_uniform_policy() -> None:
    assert uniform_policy(4) == [0.25] * 4
    with pytest.raises(ValueError):
        uniform_policy(0)


# -- storage ----------------------------------------------------------------------------------------


def test_save_and_load_round_trip(
    trained: tuple[Pipeline, PolicyCard], compiled: CompiledRewardModel, tmp_path: Path
) -> None:
    pipeline, card = trained
    path = save_policy(pipeline, card, tmp_path)
    assert path == tmp_path / f"{card.version}.skops"
    assert (tmp_path / "active").read_text() == f"{card.version}\n"
    loaded, loaded_card = load_policy(tmp_path)
    assert loaded_card == card
    reloaded = compile_policy(loaded, loaded_card)
    for x in scoring_rows()[:50]:
        assert reloaded.predict(x) == compiled.predict(x)
    assert load_policy(tmp_path, card.version)[1] == card


def test_trusted_types_are_exactly_what_the_pipeline_is_made_of(
    trained: tuple[Pipeline, PolicyCard], tmp_path: Path
) -> None:
    path = save_policy(*trained, tmp_path)
    used = schema_types(path)
    assert set(TRUSTED_TYPES) == used
    assert set(skops.io.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)


def test_a_file_with_an_untrusted_type_is_not_loaded(
    trained: tuple[Pipeline, PolicyCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    save_policy(pipeline, card, tmp_path)
    dump_with_untrusted_step(pipeline, tmp_path / f"{card.version}.skops")
    with pytest.raises(UntrustedModelError, match="FunctionTransformer") as caught:
        load_policy(tmp_path)
    assert "numpy.sqrt" in str(caught.value)


def test_a_model_from_another_sklearn_version_is_refused(
    trained: tuple[Pipeline, PolicyCard], tmp_path: Path
) -> None:
    pipeline, card = trained
    save_policy(pipeline, msgspec.structs.replace(card, sklearn_version="0.24.2"), tmp_path)
    with pytest.raises(ModelVersionMismatch, match="0.24.2"):
        load_policy(tmp_path)


def test_missing_or_corrupt_files_are_load_errors(
    trained: tuple[Pipeline, PolicyCard], tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match="active"):
        load_policy(tmp_path)
    pipeline, card = trained
    path = save_policy(pipeline, card, tmp_path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(ModelLoadError, match="not a valid skops file"):
        load_policy(tmp_path)
    with pytest.raises(ModelLoadError, match="not a policy version"):
        load_policy(tmp_path, "../etc/passwd")


def test_public_surface() -> None:
    # Training and files in models/, the serving math in decision/, the seam in seams.py.
    assert set(policy.__all__) >= {
        "PolicyCard",
        "TRUSTED_TYPES",
        "train_reward_model",
        "save_policy",
        "load_policy",
        "compile_policy",
    }
    assert set(serving.__all__) >= {
        "CompiledRewardModel",
        "action_probabilities",
        "choose_action",
        "uniform_policy",
    }
    assert "RewardModel" in seams.__all__
    for module in (policy, serving, seams):
        for name in module.__all__:
            assert hasattr(module, name)
