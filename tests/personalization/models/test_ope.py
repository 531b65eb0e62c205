"""Off-policy evaluation against a simulation whose true policy values are known exactly."""

from __future__ import annotations

import itertools
import math
import sys
from dataclasses import replace
from pathlib import Path

import msgspec
import numpy as np
import pytest

from personalization.models import ope
from personalization.models.ope import (
    Estimate,
    LoggedBandit,
    LoggedDataError,
    OffPolicyEstimate,
    ParquetUnavailableError,
    evaluate_policy,
    read_action_probabilities,
    read_logged_bandit,
    read_logged_bandit_csv,
    write_action_probabilities,
)

# -- the simulation ---------------------------------------------------------------------------------
# Contexts: channel × device × visits, all discrete, so every expectation is an exact finite sum.
# True reward rates depend on context × action; the logging policy is stochastic and depends on the
# channel; the target is deterministic (best variant per channel × device, ignoring visits).

K = 3
CHANNELS = {"web": 0.5, "ios": 0.3, "email": 0.2}
DEVICES = {"mobile": 0.6, "desktop": 0.4}
VISITS = (0.0, 1.0, 2.0, 3.0)
BASE = np.array([-1.0, -1.2, -1.5])
BY_CHANNEL = {
    "web": np.array([0.0, 0.6, -0.3]),
    "ios": np.array([0.2, -0.4, 0.5]),
    "email": np.array([0.0, 0.0, 1.2]),
}
BY_DEVICE = {"mobile": np.array([0.0, 0.3, 0.0]), "desktop": np.array([0.1, -0.2, 0.2])}
BY_VISIT = np.array([0.15, 0.0, -0.1])
LOGGING = {"web": (0.5, 0.3, 0.2), "ios": (0.2, 0.5, 0.3), "email": (0.4, 0.4, 0.2)}


def true_rates(x: dict) -> np.ndarray:
    """P(reward | x, a) for a = 0, 1, 2."""
    z = BASE + BY_CHANNEL[x["channel"]] + BY_DEVICE[x["device"]] + BY_VISIT * x["visits"]
    return 1.0 / (1.0 + np.exp(-z))


def logging_policy(x: dict) -> np.ndarray:
    return np.array(LOGGING[x["channel"]])


def target_policy(x: dict) -> np.ndarray:
    best = int(np.argmax(true_rates({**x, "visits": 1.5})))
    return np.eye(K)[best]


def true_value(policy) -> float:
    """V(π) = Σ_x P(x) Σ_a π(a|x) θ(x, a), summed exactly over the finite context space."""
    total = 0.0
    for (channel, pc), (device, pd), visits in itertools.product(
        CHANNELS.items(), DEVICES.items(), VISITS
    ):
        x = {"channel": channel, "device": device, "visits": visits}
        total += pc * pd / len(VISITS) * float(policy(x) @ true_rates(x))
    return total


def simulate(seed: int, n: int = 2000) -> tuple[LoggedBandit, np.ndarray, np.ndarray]:
    """n logged decisions; returns the log, the target's and the logging policy's probabilities."""
    rng = np.random.default_rng(seed)
    channels = rng.choice(list(CHANNELS), size=n, p=list(CHANNELS.values()))
    devices = rng.choice(list(DEVICES), size=n, p=list(DEVICES.values()))
    visits = rng.choice(VISITS, size=n)
    contexts = [
        {"channel": str(c), "device": str(d), "visits": float(v)}
        for c, d, v in zip(channels, devices, visits)
    ]
    mu = np.array([logging_policy(x) for x in contexts])
    actions = (rng.random(n)[:, None] >= np.cumsum(mu, axis=1)).sum(axis=1)
    rates = np.array([true_rates(x) for x in contexts])
    rewards = (rng.random(n) < rates[np.arange(n), actions]).astype(float)
    logged = LoggedBandit(
        contexts=contexts,
        actions=actions,
        propensities=mu[np.arange(n), actions],
        rewards=rewards,
        n_actions=K,
    )
    return logged, np.array([target_policy(x) for x in contexts]), mu


def _rows(logged: LoggedBandit, keep: np.ndarray) -> LoggedBandit:
    """The rows of ``logged`` where ``keep`` is true."""
    return LoggedBandit(
        contexts=[x for x, k in zip(logged.contexts, keep) if k],
        actions=logged.actions[keep],
        propensities=logged.propensities[keep],
        rewards=logged.rewards[keep],
        n_actions=logged.n_actions,
    )


@pytest.mark.slow
def test_intervals_cover_the_true_value() -> None:
    """50 seeded logs of 2,000 rows: each 95% interval holds the true value in ≥ 90% of them."""
    truth = true_value(target_policy)
    logged_truth = true_value(logging_policy)
    assert truth > logged_truth + 0.03  # the target is genuinely better: the test is not vacuous
    runs = 50
    covered = {"ips": 0, "snips": 0, "dr": 0, "logged": 0}
    errors = {"ips": [], "snips": [], "dr": []}
    for seed in range(runs):
        logged, target, _ = simulate(seed)
        estimate = evaluate_policy(logged, target, n_bootstrap=200, random_state=seed)
        for name in covered:
            low, high = getattr(estimate, name).interval
            covered[name] += low <= (logged_truth if name == "logged" else truth) <= high
        for name in errors:
            errors[name].append(getattr(estimate, name).value - truth)
        assert estimate.warnings == ()
    rates = {name: count / runs for name, count in covered.items()}
    print(f"coverage over {runs} runs: {rates}")
    assert all(rate >= 0.90 for rate in rates.values()), rates
    # DR and SNIPS use the data better than IPS here; all three are centred on the truth.
    for name, values in errors.items():
        assert abs(np.mean(values)) < 0.01, name
    assert np.std(errors["dr"]) < np.std(errors["ips"])


def test_known_values_by_formula() -> None:
    logged, target, _ = simulate(1, n=500)
    q = np.full((500, K), 0.3)
    estimate = evaluate_policy(
        logged, target, reward_model=lambda tx, ta, tr, px, k: np.full((len(px), k), 0.3)
    )
    w = target[np.arange(500), logged.actions] / logged.propensities
    r = logged.rewards
    assert estimate.ips.value == pytest.approx(np.mean(w * r), abs=1e-12)
    assert estimate.snips.value == pytest.approx(np.sum(w * r) / np.sum(w), abs=1e-12)
    dr = np.mean((target * q).sum(axis=1) + w * (r - q[np.arange(500), logged.actions]))
    assert estimate.dr.value == pytest.approx(dr, abs=1e-12)
    assert estimate.logged.value == pytest.approx(r.mean(), abs=1e-12)
    assert estimate.ess == pytest.approx(w.sum() ** 2 / (w**2).sum(), abs=1e-9)
    for name in ("ips", "snips", "dr", "logged"):
        low, high = getattr(estimate, name).interval
        assert low <= getattr(estimate, name).value <= high


def test_non_binary_rewards_use_a_regression_reward_model() -> None:
    logged, target, _ = simulate(11, n=600)
    revenue = replace(logged, rewards=logged.rewards * np.where(logged.actions == 2, 30.0, 20.0))
    estimate = evaluate_policy(revenue, target, n_bootstrap=50)
    assert math.isfinite(estimate.dr.value) and estimate.dr.value > 0.0
    assert estimate.dr.interval[0] <= estimate.dr.value <= estimate.dr.interval[1]


def test_a_reward_model_of_the_wrong_shape_is_refused() -> None:
    logged, target, _ = simulate(12, n=200)
    with pytest.raises(ValueError, match="expected finite"):
        evaluate_policy(logged, target, reward_model=lambda tx, ta, tr, px, k: np.zeros((len(px), 1)))


def test_ess_equals_n_when_target_is_the_logging_policy() -> None:
    logged, _, mu = simulate(2, n=800)
    estimate = evaluate_policy(logged, mu, n_bootstrap=50)
    assert estimate.ess == pytest.approx(800.0, abs=1e-9)
    assert estimate.n == 800
    assert estimate.ips.value == pytest.approx(estimate.logged.value, abs=1e-12)
    assert estimate.snips.value == pytest.approx(estimate.logged.value, abs=1e-12)
    assert estimate.warnings == ()


def test_clipping_is_counted_and_applied() -> None:
    logged, target, _ = simulate(3, n=600)
    w = target[np.arange(600), logged.actions] / logged.propensities  # up to 1/0.2 = 5
    estimate = evaluate_policy(logged, target, clip=3.0, n_bootstrap=50)
    assert estimate.clipped == int((w > 3.0).sum()) > 0
    expected = np.mean(np.minimum(w, 3.0) * logged.rewards)
    assert estimate.ips.value == pytest.approx(expected, abs=1e-12)
    assert evaluate_policy(logged, target, n_bootstrap=50).clipped == 0


def test_missing_and_zero_propensities_are_dropped_and_reported() -> None:
    logged, target, _ = simulate(4, n=600)
    propensities = logged.propensities.copy()
    propensities[[3, 10, 50]] = np.nan
    propensities[[7, 8]] = 0.0
    damaged = replace(logged, propensities=propensities)
    estimate = evaluate_policy(damaged, target, n_bootstrap=50)
    assert estimate.n == 595 and estimate.dropped == 5
    assert any("5 of 600 rows" in w and "dropped" in w for w in estimate.warnings)
    keep = np.isfinite(propensities) & (propensities > 0)
    w = target[keep][np.arange(595), logged.actions[keep]] / propensities[keep]
    assert estimate.ips.value == pytest.approx(np.mean(w * logged.rewards[keep]), abs=1e-12)


def test_low_propensities_and_poor_overlap_are_reported() -> None:
    logged, _, _ = simulate(5, n=600)
    propensities = logged.propensities.copy()
    propensities[0] = 0.004
    tiny = replace(logged, propensities=propensities)
    # Concentrate the target on rows that were logged with a tiny propensity: ESS collapses.
    target = np.tile([0.0, 0.0, 1.0], (600, 1))
    estimate = evaluate_policy(tiny, target, n_bootstrap=50)
    assert any("below 0.01" in w and "0.004" in w for w in estimate.warnings)
    lowest = np.zeros((600, K))
    lowest[np.arange(600), logged.actions] = 1.0
    lowest[1:, :] = np.eye(K)[(logged.actions[1:] + 1) % K]  # never the logged action, but row 0
    collapsed = evaluate_policy(tiny, lowest, n_bootstrap=50)
    assert collapsed.ess == pytest.approx(1.0)
    assert any("effective sample size" in w for w in collapsed.warnings)


def test_mass_on_never_logged_variants_is_reported() -> None:
    logged, _, _ = simulate(6, n=900)
    # Variant 2 never logged at all:
    keep = logged.actions != 2
    only_two = _rows(logged, keep)
    uniform = np.full((int(keep.sum()), K), 1.0 / K)
    estimate = evaluate_policy(only_two, uniform, n_bootstrap=50)
    assert any("variant 2 was never logged" in w for w in estimate.warnings)
    # Variant 2 logged, but never for email visitors, where the target plays it:
    keep = ~((logged.actions == 2) & np.array([x["channel"] == "email" for x in logged.contexts]))
    holes = _rows(logged, keep)
    target = np.array([np.eye(K)[2] if x["channel"] == "email" else np.eye(K)[0] for x in holes.contexts])
    estimate = evaluate_policy(holes, target, n_bootstrap=50)
    assert any("same categorical features" in w for w in estimate.warnings)


def test_same_seed_same_result_and_json_shape() -> None:
    logged, target, _ = simulate(7, n=400)
    first = evaluate_policy(logged, target, n_bootstrap=100, random_state=3)
    assert evaluate_policy(logged, target, n_bootstrap=100, random_state=3) == first
    assert evaluate_policy(logged, target, n_bootstrap=100, random_state=4) != first
    encoded = msgspec.json.decode(msgspec.json.encode(first))
    assert set(encoded["dr"]) == {"value", "interval"} and len(encoded["dr"]["interval"]) == 2
    assert {"ips", "snips", "dr", "logged", "ess", "n", "clipped", "warnings"} <= set(encoded)
    assert isinstance(first, OffPolicyEstimate) and isinstance(first.ips, Estimate)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (np.full((400, K), 0.5), "sums to"),
        (np.full((400, 2), 0.5), r"shape \(400, 2\)"),
        (np.full((400, K), np.nan), "finite"),
    ],
)
def test_bad_target_probabilities_are_refused(target: np.ndarray, message: str) -> None:
    logged, _, _ = simulate(8, n=400)
    with pytest.raises(ValueError, match=message):
        evaluate_policy(logged, target)


def test_logged_bandit_checks_its_arrays() -> None:
    with pytest.raises(ValueError, match="one value per row"):
        LoggedBandit(contexts=[{}], actions=[0, 1], propensities=[0.5], rewards=[1.0], n_actions=2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        LoggedBandit(contexts=[{}], actions=[2], propensities=[0.5], rewards=[1.0], n_actions=2)
    with pytest.raises(ValueError, match="propensities"):
        LoggedBandit(contexts=[{}], actions=[1], propensities=[1.5], rewards=[1.0], n_actions=2)


# -- files ------------------------------------------------------------------------------------------

GOOD_CSV = """channel,visits,device,action,propensity,reward,id
web,3,mobile,1,0.5,1,a
email,,desktop,0,0.25,0,b
ios,1.5,,2,,1,c
"""


def test_csv_reader_types_columns_and_keeps_missing_propensities(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV)
    logged = read_logged_bandit_csv(path, ignore={"id"})
    assert logged.contexts == [
        {"channel": "web", "visits": 3.0, "device": "mobile"},
        {"channel": "email", "device": "desktop"},
        {"channel": "ios", "visits": 1.5},
    ]
    assert logged.actions.tolist() == [1, 0, 2]
    assert logged.propensities[:2].tolist() == [0.5, 0.25] and math.isnan(logged.propensities[2])
    assert logged.rewards.tolist() == [1.0, 0.0, 1.0]
    assert logged.n_actions == 3
    assert read_logged_bandit_csv(path, n_actions=5).contexts[0]["id"] == "a"
    assert read_logged_bandit(path).n_actions == 3


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("web,1,mobile,x,0.5,1,d", "action", "not a number"),
        ("web,1,mobile,1.5,0.5,1,d", "action", "not a variant index"),
        ("web,1,mobile,-1,0.5,1,d", "action", "not in"),
        ("web,1,mobile,1,abc,1,d", "propensity", "not a number"),
        ("web,1,mobile,1,1.2,1,d", "propensity", r"not in \[0, 1\]"),
        ("web,1,mobile,1,0.5,,d", "reward", "not a reward"),
        ("web,1,mobile,1,0.5,inf,d", "reward", "not a reward"),
    ],
)
def test_csv_errors_name_the_row_and_column(
    tmp_path: Path, row: str, column: str, message: str
) -> None:
    path = tmp_path / "log.csv"
    path.write_text(GOOD_CSV + row + "\n")
    with pytest.raises(LoggedDataError, match=message) as caught:
        read_logged_bandit_csv(path)
    assert f"row 4 (line 5), column {column!r}" in str(caught.value)
    assert str(path) in str(caught.value)


def test_csv_structure_errors(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("channel,action,reward\nweb,1,0\n")
    with pytest.raises(LoggedDataError, match=r"missing column\(s\) \['propensity'\]"):
        read_logged_bandit_csv(path)
    path.write_text(GOOD_CSV + "web,1\n")
    with pytest.raises(LoggedDataError, match=r"row 4 \(line 5\): 2 fields, the header has 7"):
        read_logged_bandit_csv(path)
    path.write_text(GOOD_CSV)
    with pytest.raises(LoggedDataError, match=r"not in \[0, 2\)"):
        read_logged_bandit_csv(path, n_actions=2)
    path.write_text("")
    with pytest.raises(LoggedDataError, match="empty file"):
        read_logged_bandit_csv(path)
    with pytest.raises(LoggedDataError, match="unknown format"):
        read_logged_bandit(tmp_path / "log.json")


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow → ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ParquetUnavailableError, match="needs pyarrow") as caught:
        read_logged_bandit(tmp_path / "log.parquet")
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, LoggedDataError)


def test_action_probabilities_round_trip(tmp_path: Path) -> None:
    _, target, mu = simulate(9, n=300)
    probabilities = 0.5 * target + 0.5 * mu
    probabilities[0] = [1 / 3, 1 / 3, 1 / 3]
    path = tmp_path / "probabilities.csv"
    write_action_probabilities(path, probabilities)
    assert path.read_text().splitlines()[0] == "p_0,p_1,p_2"
    assert np.array_equal(read_action_probabilities(path), probabilities)


def test_end_to_end_from_files(tmp_path: Path) -> None:
    logged, target, _ = simulate(10, n=500)
    lines = ["channel,device,visits,action,propensity,reward"]
    for x, a, p, r in zip(logged.contexts, logged.actions, logged.propensities, logged.rewards):
        lines.append(f"{x['channel']},{x['device']},{x['visits']!r},{a},{float(p)!r},{float(r)!r}")
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    write_action_probabilities(tmp_path / "target.csv", target)
    read = read_logged_bandit(tmp_path / "log.csv")
    assert read.contexts == logged.contexts
    target_read = read_action_probabilities(tmp_path / "target.csv")
    from_files = evaluate_policy(read, target_read, n_bootstrap=50)
    assert from_files == evaluate_policy(logged, target, n_bootstrap=50)


def test_public_surface() -> None:
    assert set(ope.__all__) >= {
        "LoggedBandit",
        "Estimate",
        "OffPolicyEstimate",
        "read_logged_bandit",
        "read_logged_bandit_csv",
        "evaluate_policy",
        "write_action_probabilities",
    }
    for name in ope.__all__:
        assert hasattr(ope, name)
