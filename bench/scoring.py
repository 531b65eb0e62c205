"""Benchmark: per-visitor scoring time of Vary's serving path vs ``Pipeline.predict_proba``.

Vary never calls scikit-learn while serving: :func:`~personalization.models.segment_model.compile_model`
and :func:`~personalization.models.policy.compile_policy` fold each trained pipeline into a dict of
weights scored in pure Python. This script measures what that buys, per visitor, against the
straightforward alternative of calling the fitted pipeline on one row:

* ``demo segment model`` — the bundled demo model (13 base features, 3 segments):
  ``CompiledSegmentModel.score(row)`` vs ``pipeline.predict_proba([row])``;
* ``200-feature segment model`` — a model trained here on synthetic data with 200 numeric features;
* ``policy reward model`` — a bandit reward model over k variants: ``CompiledRewardModel.predict``
  vs ``predict_proba`` of the k ``action_features`` rows.

Timing: ``timeit`` over a batch of distinct rows, after a warm-up, the median of several repeats,
divided by the batch size. It is a benchmark, run by hand (``python -m bench.scoring [--quick]``),
never a timed test: wall-clock thresholds in a test suite fail on busy machines. The target is a
ratio of at least 10×. Results go to ``bench/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import sklearn

from personalization.demo.data import DEMO_CSV, read_training_csv
from personalization.decision.features import FeatureRow, policy_context
from personalization.decision.policy import action_features
from personalization.models.policy import compile_policy, train_reward_model
from personalization.models.segment_model import compile_model, train_segment_model

__all__ = ["TARGET_RATIO", "RESULTS", "time_per_call", "run", "main"]

#: The serving path must be at least this many times faster than ``predict_proba`` on one row.
TARGET_RATIO = 10
RESULTS = Path(__file__).parent / "results" / "scoring.json"
_CREATED_AT = 1_750_000_000.0  # fixed, so the benchmark's models have stable versions


def time_per_call(fn: Callable[[], object], calls_per_run: int, repeats: int, min_time: float) -> float:
    """Seconds per call of one of the ``calls_per_run`` calls ``fn`` makes: the median of ``repeats``.

    ``fn`` is run a few times first (warm-up: caches, lazy imports, branch predictors), then
    ``timeit`` picks a loop count that lasts at least ``min_time`` per repeat.
    """
    for _ in range(3):
        fn()
    timer = timeit.Timer(fn)
    number = 1
    while True:
        if timer.timeit(number) >= min_time:
            break
        number *= 2
    runs = timer.repeat(repeat=repeats, number=number)
    return statistics.median(runs) / number / calls_per_run


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _check_close(a: Sequence[float], b: Sequence[float], what: str) -> None:
    """The two paths must agree before their speed means anything."""
    diff = float(np.max(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))))
    if diff > 1e-9:
        raise AssertionError(f"{what}: compiled and pipeline predictions differ by {diff:g}")


def _segment_comparison(
    name: str, pipeline, card, rows: Sequence[FeatureRow], repeats: int, min_time: float  # noqa: ANN001
) -> dict[str, object]:
    model = compile_model(pipeline, card)
    for row in rows[:5]:
        compiled = model.score(row)
        expected = [p[0, 1] for p in pipeline.predict_proba([row])]
        _check_close([compiled[s] for s in card.segments], expected, name)

    def vary() -> None:
        for row in rows:
            model.score(row)

    def baseline() -> None:
        for row in rows:
            pipeline.predict_proba([row])

    vary_s = time_per_call(vary, len(rows), repeats, min_time)
    baseline_s = time_per_call(baseline, len(rows), repeats, min_time)
    return _result(name, vary_s, baseline_s)


def _result(name: str, vary_s: float, baseline_s: float) -> dict[str, object]:
    return {
        "name": name,
        "vary_us": round(vary_s * 1e6, 3),
        "baseline_us": round(baseline_s * 1e6, 3),
        "ratio": round(baseline_s / vary_s, 1),
        "target": TARGET_RATIO,
    }


def demo_model(batch: int, repeats: int, min_time: float) -> dict[str, object]:
    rows, labels, timestamps = read_training_csv(DEMO_CSV)
    pipeline, card = train_segment_model(rows, labels, timestamps, created_at=_CREATED_AT)
    sample = random.Random(1).sample(rows, batch)
    name = f"demo segment model ({len(card.features)} features, {len(card.segments)} segments)"
    return _segment_comparison(name, pipeline, card, sample, repeats, min_time)


def wide_model(batch: int, repeats: int, min_time: float, n_rows: int, n_features: int = 200) -> dict[str, object]:
    """A segment model on ``n_features`` numeric features (synthetic, 3 segments, seeded)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(n_rows, n_features))
    names = [f"f{j:03d}" for j in range(n_features)]
    rows: list[FeatureRow] = [dict(zip(names, map(float, values))) for values in x]
    labels = {}
    for s in range(3):
        weights = rng.normal(scale=0.3, size=n_features) * (rng.random(n_features) < 0.2)
        p = 1.0 / (1.0 + np.exp(-(x @ weights)))
        labels[f"segment_{s}"] = (rng.random(n_rows) < p).astype(int).tolist()
    pipeline, card = train_segment_model(rows, labels, list(range(n_rows)), created_at=_CREATED_AT)
    name = f"{n_features}-feature segment model (3 segments)"
    return _segment_comparison(name, pipeline, card, rows[:batch], repeats, min_time)


def policy_model(batch: int, repeats: int, min_time: float, n_rows: int, k: int = 3) -> dict[str, object]:
    """A bandit reward model over ``k`` variants on simulated contexts (policy_context, 3 segments)."""
    rng = random.Random(11)
    contexts, actions, rewards = [], [], []
    for _ in range(n_rows):
        segments = {"price_sensitive": rng.random(), "high_intent": rng.random(), "loyal": rng.random()}
        context = policy_context(
            rng.choice(["web", "ios", "android", "email"]), rng.choice(["US", "DE", "GB", "FR"]),
            rng.choice(["mobile", "desktop", "tablet"]), segments,
        )
        action = rng.randrange(k)
        p = 0.1 + 0.3 * segments["price_sensitive"] * (action == 1) + 0.2 * (context["channel"] == "ios") * (action == 2)
        contexts.append(context)
        actions.append(action)
        rewards.append(int(rng.random() < p))
    pipeline, card = train_reward_model(contexts, actions, rewards, k, created_at=_CREATED_AT)
    model = compile_policy(pipeline, card)
    sample = contexts[:batch]
    for context in sample[:5]:
        expected = pipeline.predict_proba([action_features(context, a) for a in range(k)])[:, 1]
        _check_close(model.predict(context), expected, "policy")

    def vary() -> None:
        for context in sample:
            model.predict(context)

    def baseline() -> None:
        for context in sample:
            pipeline.predict_proba([action_features(context, a) for a in range(k)])

    name = f"policy reward model ({k} variants, predict_proba of {k} rows)"
    return _result(name, time_per_call(vary, batch, repeats, min_time), time_per_call(baseline, batch, repeats, min_time))


def run(quick: bool = False) -> dict[str, object]:
    """Every comparison, plus the machine it ran on."""
    batch, repeats, min_time, n_rows = (16, 3, 0.05, 1000) if quick else (64, 7, 0.2, 4000)
    comparisons = [
        demo_model(batch, repeats, min_time),
        wide_model(batch, repeats, min_time, n_rows),
        policy_model(batch, repeats, min_time, n_rows),
    ]
    return {
        "comparisons": comparisons,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "quick": quick,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": f"timeit, warm-up, median of {repeats} repeats, {batch} distinct rows per run",
    }


def _print(results: dict[str, object]) -> None:
    comparisons = results["comparisons"]
    assert isinstance(comparisons, list)
    header = ["comparison", "vary µs", "predict_proba µs", "ratio", "target"]
    rows = [
        [str(c["name"]), f"{c['vary_us']:.1f}", f"{c['baseline_us']:.1f}", f"{c['ratio']:.0f}×",
         f"≥{c['target']}× " + ("ok" if c["ratio"] >= c["target"] else "MISSED")]
        for c in comparisons
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"\n{results['cpu_count']} CPUs, {results['cpu_model']}; Python {results['python']}, "
          f"scikit-learn {results['sklearn']}; {results['method']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    results = run(quick=args.quick)
    _print(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    comparisons = results["comparisons"]
    assert isinstance(comparisons, list)
    return 0 if all(c["ratio"] >= c["target"] for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
