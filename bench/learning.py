"""Benchmark: how good is the policy Vary LEARNS from logs, against Vowpal Wabbit on the same logs.

A synthetic logged-bandit world with known expected rewards (:mod:`personalization.demo.logged_bandit`:
binary rewards, a logging policy biased towards the bad variants, seeded) is logged, and three
policies are learned from the same rows:

* **Vary served** — what Vary would serve: the reward model trained by ``vary train policy``
  (:func:`~personalization.models.policy.train_reward_model`), compiled, and turned into serving
  probabilities by :func:`~personalization.decision.policy.action_probabilities` with the default
  exploration settings (Thompson sampling, an ε = 0.1 budget decaying with the rows, floor
  min(0.05, ε_n/2k));
* **Vary greedy** — the argmax of the same reward model;
* **VW** — Vowpal Wabbit ``--cb_adf -q sa`` (context × action interactions) with ``--cb_type`` ips,
  dr and mtr, 1 and 5 passes: the best of the six by TRUE value is reported (its best case).

Each policy's TRUE value is computed on fresh contexts from the known reward rates, and reported as
its relative position (value − uniform) / (oracle − uniform): 0 = serving at random, 1 = always the
best variant for the visitor. Targets: Vary greedy ≥ VW in both settings; Vary served ≥ 0.93 with 10
variants and ≥ 0.85 with 50.

Run: ``python -m bench.learning [--quick]`` (part of ``make bench``). Results go to
``bench/results/learning.json`` and a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personalization.decision.policy import action_probabilities
from personalization.demo.logged_bandit import (
    BanditWorld,
    LoggedSample,
    feature_rows,
    make_world,
    relative_position,
)
from personalization.models.policy import compile_policy, train_reward_model

__all__ = ["SETTINGS", "RESULTS", "Setting", "run", "main"]

RESULTS = Path(__file__).parent / "results" / "learning.json"
#: Fresh contexts each policy's true value is averaged over.
EVALUATION_CONTEXTS = 20_000
_CREATED_AT = 1_750_000_000.0
_VW_CONFIGS = tuple((cb_type, passes) for cb_type in ("ips", "dr", "mtr") for passes in (1, 5))


@dataclass(frozen=True, slots=True)
class Setting:
    """One benchmark setting: world shape, logged rows, seed, and the served-policy target."""

    n_actions: int
    n_features: int
    rows: int
    seed: int
    served_target: float


SETTINGS = (Setting(10, 5, 20_000, 1, 0.93), Setting(50, 20, 100_000, 2, 0.85))


# ---------------------------------------------------------------------------------------------------
# Vowpal Wabbit


def _vw_shared(x: np.ndarray) -> str:
    return "shared |s " + " ".join(f"f{j}:{v:.6g}" for j, v in enumerate(x))


def _vw_write(path: Path, sample: LoggedSample, k: int) -> None:
    """ADF text: a shared line, one line per action, the chosen one labelled ``0:cost:probability``."""
    with path.open("w") as out:
        for x, a, p, r in zip(sample.contexts, sample.actions, sample.propensities, sample.rewards):
            lines = [_vw_shared(x)]
            for b in range(k):
                label = f"0:{-float(r):g}:{p:.9g} " if b == a else ""
                lines.append(f"{label}|a a{b}")
            out.write("\n".join(lines) + "\n\n")


def _vw_policy(train: Path, contexts: np.ndarray, k: int, cb_type: str, passes: int, workdir: Path) -> np.ndarray:
    """Train VW on the ADF file; its greedy policy (lowest predicted cost) on ``contexts``, one-hot."""
    from vowpalwabbit import Workspace

    model = workdir / f"vw-{cb_type}-{passes}.model"
    cache = workdir / f"vw-{cb_type}-{passes}.cache"
    args = f"--cb_adf -q sa --cb_type {cb_type} --quiet -d {train} -f {model}"
    if passes > 1:
        args += f" --passes {passes} --cache_file {cache} -k --holdout_off"
    learner = Workspace(args)
    learner.run_parser()
    learner.finish()
    scorer = Workspace(f"--quiet -t -i {model}")
    actions = [f"|a a{b}" for b in range(k)]
    chosen = np.empty(len(contexts), dtype=np.int64)
    for i, x in enumerate(contexts):
        costs = scorer.predict([_vw_shared(x), *actions])
        chosen[i] = int(np.argmin(costs))
    scorer.finish()
    return np.eye(k)[chosen]


# ---------------------------------------------------------------------------------------------------
# One setting


def _vary(world: BanditWorld, sample: LoggedSample, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(served, greedy) probabilities of Vary's policy on ``contexts``, and the training seconds."""
    k = world.n_actions
    started = time.perf_counter()
    pipeline, card = train_reward_model(
        feature_rows(sample.contexts), sample.actions, sample.rewards, k,
        propensities=sample.propensities, created_at=_CREATED_AT,
    )
    seconds = time.perf_counter() - started
    model = compile_policy(pipeline, card)
    served = np.empty((len(contexts), k))
    greedy = np.zeros((len(contexts), k))
    for i, row in enumerate(feature_rows(contexts)):
        predictions = model.predict(row)
        served[i] = action_probabilities(predictions)
        greedy[i, int(np.argmax(predictions))] = 1.0
    return served, greedy, seconds


def run_setting(setting: Setting, quick: bool = False) -> dict[str, object]:
    world = make_world(setting.n_actions, setting.n_features, setting.seed)
    rows = setting.rows // 4 if quick else setting.rows
    sample = world.log(rows, setting.seed)
    contexts = world.contexts(EVALUATION_CONTEXTS // (4 if quick else 1), setting.seed + 1000)
    uniform, oracle = world.bounds(contexts)

    def position(policy: np.ndarray) -> float:
        return round(relative_position(world.value(contexts, policy), uniform, oracle), 4)

    served, greedy, train_s = _vary(world, sample, contexts)
    result: dict[str, object] = {
        "variants": setting.n_actions,
        "features": setting.n_features,
        "rows": rows,
        "uniform": round(uniform, 4),
        "oracle": round(oracle, 4),
        "logging": position(world.logging_probabilities(contexts)),
        "vary_served": position(served),
        "vary_greedy": position(greedy),
        "vary_train_s": round(train_s, 1),
        "served_target": setting.served_target,
    }
    vw: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vary-bench-vw-") as tmp:
        data = Path(tmp) / "train.dat"
        _vw_write(data, sample, setting.n_actions)
        for cb_type, passes in _VW_CONFIGS:
            vw[f"{cb_type}×{passes}"] = position(_vw_policy(data, contexts, setting.n_actions, cb_type, passes, Path(tmp)))
    best = max(vw, key=vw.__getitem__)
    result.update(vw=vw, vw_best=best, vw_best_position=vw[best], vw_s=round(time.perf_counter() - started, 1))
    result["greedy_beats_vw"] = result["vary_greedy"] >= vw[best]
    result["served_meets_target"] = result["vary_served"] >= setting.served_target
    return result


def table(results: list[dict[str, object]]) -> str:
    lines = [
        "| setting | rows | Vary served | Vary greedy | VW best (cb_type×passes) | logging policy | Vary training |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['variants']} variants × {r['features']} features | {r['rows']:,} | {r['vary_served']:.3f} "
            f"(target {r['served_target']}) | {r['vary_greedy']:.3f} | {r['vw_best_position']:.3f} ({r['vw_best']}) "
            f"| {r['logging']:.3f} | {r['vary_train_s']} s |"
        )
    return "\n".join(lines)


def run(quick: bool = False) -> list[dict[str, object]]:
    return [run_setting(setting, quick) for setting in SETTINGS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the rows (a smoke run)")
    args = parser.parse_args(argv)
    results = run(args.quick)
    print(table(results))
    for r in results:
        print(f"  VW on {r['variants']} variants: " + ", ".join(f"{name} {v:.3f}" for name, v in r["vw"].items()))
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    ok = all(r["greedy_beats_vw"] and r["served_meets_target"] for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
