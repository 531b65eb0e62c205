"""``vary train policy --data`` and ``vary evaluate --out`` with many variants (#21): the written
probabilities are exactly what serving would give each logged row, and never uniform."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from api.cli.main import main
from personalization.decision.policy import action_probabilities
from personalization.demo.logged_bandit import make_world
from personalization.models.ope import read_action_probabilities
from personalization.models.policy import compile_policy, load_policy

K = 30


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, redis_url: str) -> Path:
    for name in ("VARY_CONTENT_SOURCE", "VARY_TRAIN_DEMO_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VARY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VARY_REDIS_URL", redis_url)
    return tmp_path / "data"


def test_train_and_evaluate_a_30_variant_policy(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world(K, 4, seed=5)
    sample = world.log(3_000, seed=5)
    data = tmp_path / "logged.csv"
    with data.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "f0", "f1", "f2", "f3", "action", "propensity", "reward"])
        for i, (x, a, p, r) in enumerate(zip(sample.contexts, sample.actions, sample.propensities, sample.rewards)):
            writer.writerow([1_700_000_000 + i, *(f"{v:.6f}" for v in x), int(a), f"{p:.9f}", int(r)])

    code = main(["train", "policy", "--data", str(data), "--experience", "many"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    version = next(line for line in captured.out.splitlines() if line.startswith("trained ")).split()[1].rstrip(":")
    assert f"{K} variants, read from the file" in captured.out

    out = tmp_path / "probabilities.csv"
    code = main(["evaluate", "--data", str(data), "--model", version, "--out", str(out), "--bootstrap", "50"])
    assert code == 0, capsys.readouterr().err
    written = read_action_probabilities(out)
    assert written.shape == (3_000, K)
    assert np.abs(written.sum(axis=1) - 1.0).max() < 1e-9
    assert written.max(axis=1).min() > 0.85  # mostly the predicted best: never uniform

    policy = compile_policy(*load_policy(env / "policies" / "many", version))
    with data.open() as handle:
        rows = list(csv.DictReader(handle))
    for i in range(0, 3_000, 97):
        context = {f"f{j}": float(rows[i][f"f{j}"]) for j in range(4)}
        np.testing.assert_allclose(written[i], action_probabilities(policy.predict(context)), rtol=0, atol=1e-12)
