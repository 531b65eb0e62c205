"""The Python SDK's local decision (``sdk/python``, ``VaryClient.decide``) against GrowthBook's ``gb.run``.

The three experiments of :mod:`bench.decision` are put in a real bundle (``build_bundle``, encoded as
``GET /v1/bundle`` serves it), the SDK decides from it; GrowthBook runs the same experiments. Before
timing, both must assign 1,000 visitors alike. The SDK's side is the whole ``VaryClient.decide``: the
decision (Vary's own ``decide()``), the answer in ``POST /v1/personalize``'s shape, and the local
decision record that ``POST /v1/exposures`` checks — more than ``gb.run`` returns, as in
:mod:`bench.decision`. Bundle load (decode + compile, no signature) is reported once per bundle.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.common import comparison, time_per_call
from bench.decision import _attributes, _visitors, experiments
from personalization.decision.bundle import build_bundle

__all__ = ["python_rows"]

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk" / "python"
TARGET = 1.0


def _client_class() -> Any:
    if str(SDK_DIR) not in sys.path:
        sys.path.insert(0, str(SDK_DIR))
    from vary_sdk import VaryClient  # the SDK as an app imports it

    return VaryClient


def _bundle_bytes() -> bytes:
    vary_exps, _ = experiments()
    bundle = build_bundle(
        content_version="bench", experiences_by_entry={f"entry-{e.key}": (e,) for e in vary_exps}, model=None,
        policies={}, global_holdout=0.0, now=time.time(),
    )
    return msgspec.json.encode(bundle)


def python_rows(quick: bool) -> list[dict[str, Any]]:
    from growthbook import GrowthBook

    client_class = _client_class()
    data = _bundle_bytes()
    client = client_class(data)
    vary_exps, gb_exps = experiments()
    entries = [f"entry-{e.key}" for e in vary_exps]
    gb = GrowthBook()
    compared = 0
    for visitor in _visitors(1000, seed=1):  # same assignments first
        answer = client.decide(visitor, entries)
        gb.set_attributes(_attributes(visitor))
        for entry, experiment in zip(answer.entries, gb_exps):
            result = gb.run(experiment)
            ours = entry.variant if entry.experience is not None else None
            theirs = result.variationId if result.inExperiment else None
            assert ours == theirs, f"{experiment.key} for {visitor.id}: SDK {ours}, GrowthBook {theirs}"
            compared += 1
    batch, repeats, min_time = (100, 3, 0.05) if quick else (400, 7, 0.2)
    visitors = _visitors(batch, seed=2)
    attributes = [_attributes(v) for v in visitors]
    first = gb_exps[0]

    def sdk_one() -> None:
        for visitor in visitors:
            client.decide(visitor, entries[:1])

    def sdk_three() -> None:
        for visitor in visitors:
            client.decide(visitor, entries)

    def gb_one() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)
            gb.run(first)

    def gb_three() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)
            for experiment in gb_exps:
                gb.run(experiment)

    fns = {"sdk_one": sdk_one, "sdk_three": sdk_three, "gb_one": gb_one, "gb_three": gb_three}
    best: dict[str, float] = {}
    for _ in range(2):  # interleaved, best of two passes
        for name, fn in fns.items():
            best[name] = min(best.get(name, float("inf")), time_per_call(fn, batch, repeats, min_time) * 1e6)
    load = time_per_call(lambda: client_class(data), 1, repeats, min_time) * 1e6
    detail = {"agreement_checked": compared, "bundle_bytes": len(data)}
    return [
        comparison("Python SDK decide(), 1 experience vs gb.run", "sdk", "µs/decision",
                   best["sdk_one"], best["gb_one"], TARGET, target_on="ratio", better="lower", **detail),
        comparison("Python SDK decide(), 3 experiences vs gb.run × 3", "sdk", "µs/decision",
                   best["sdk_three"], best["gb_three"], TARGET, target_on="ratio", better="lower", **detail),
        comparison(f"Python SDK bundle load (decode + compile, {len(data):,} B)", "sdk", "µs", load, None,
                   5_000.0, target_on="vary", better="lower", **detail),
    ]
