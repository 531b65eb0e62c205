"""Decision in process: ``decide()`` vs GrowthBook's ``gb.run`` for the same assignments.

Three experiments, defined once as Vary :class:`~personalization.types.Experience` structs and once
as GrowthBook ``Experiment`` objects with the same key, weights, coverage (= traffic allocation),
audience condition and hash version 2:

* ``bench-hero`` — 2 variations 50/50, audience ``country $in [CA, US]``;
* ``bench-shipping`` — 3 variations 34/33/33, everyone;
* ``bench-newsletter`` — 2 variations 50/50, 50% coverage, audience ``channel $in [web, ios, android]``.

Vary's side is a whole ``decide()`` call: canonical visitor, audience attributes, audience match,
bucketing, the decision with its marketer-readable reason, the exposure record and the sticky
assignment to store. GrowthBook's side is ``gb.set_attributes`` + ``gb.run`` per experiment (no
tracking callback, no sticky bucket service). No segment model on either side (GrowthBook has none):
this compares the decision itself. Visitors are new (empty profile), each iteration a different one.

Before timing, both must agree: 1,000 visitors are assigned by both and every variant (and every
"not in the experiment") must match — GrowthBook hashes the same way (FNV-1a v2 of key + id).

Targets (issue 7): one experience ≤ 1.0× the time of one ``gb.run``; three experiences ≤ 3× of one.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.common import comparison, time_per_call
from personalization.decision.decide import EntryRequest, decide
from personalization.types import Audience, Experience, Profile, Visitor

__all__ = ["experiments", "check_agreement", "run"]

TARGET_ONE = 1.0
TARGET_THREE = 3.0

_SPECS: list[dict[str, Any]] = [
    {"key": "bench-hero", "k": 2, "weights": (0.5, 0.5), "coverage": 1.0,
     "condition": {"country": {"$in": ["CA", "US"]}}},
    {"key": "bench-shipping", "k": 3, "weights": (0.34, 0.33, 0.33), "coverage": 1.0, "condition": None},
    {"key": "bench-newsletter", "k": 2, "weights": (0.5, 0.5), "coverage": 0.5,
     "condition": {"channel": {"$in": ["web", "ios", "android"]}}},
]


def experiments() -> tuple[list[Experience], list[Any]]:
    """The three experiments as Vary structs and as GrowthBook ``Experiment`` objects."""
    from growthbook import Experiment

    vary: list[Experience] = []
    gb: list[Any] = []
    for spec in _SPECS:
        condition = spec["condition"]
        audience = (
            Audience(id=f"aud-{spec['key']}", key=f"aud-{spec['key']}", name=f"audience of {spec['key']}",
                     condition=condition)
            if condition is not None else None
        )
        vary.append(
            Experience(
                id=f"exp-{spec['key']}",
                key=spec["key"],
                name=spec["key"],
                type="ab_test",
                variants=tuple(f"{spec['key']}-v{i}" for i in range(1, spec["k"])),
                weights=spec["weights"],
                audience=audience,
                traffic_allocation=spec["coverage"],
            )
        )
        gb.append(
            Experiment(
                key=spec["key"],
                variations=list(range(spec["k"])),
                weights=list(spec["weights"]),
                coverage=spec["coverage"],
                condition=condition,
                hashVersion=2,
            )
        )
    return vary, gb


def _visitors(n: int, seed: int) -> list[Visitor]:
    rng = random.Random(seed)
    return [
        Visitor(
            id=f"{rng.getrandbits(128):032x}"[:8] + "-" + f"{rng.getrandbits(96):024x}",
            channel=rng.choice(["web", "web", "ios", "email"]),
            country=rng.choice(["US", "US", "CA", "DE"]),
            device=rng.choice(["mobile", "desktop"]),
        )
        for _ in range(n)
    ]


def _attributes(visitor: Visitor) -> dict[str, Any]:
    return {"id": visitor.id, "channel": visitor.channel, "country": visitor.country, "device": visitor.device}


def check_agreement(n: int = 1000) -> int:
    """Assign ``n`` visitors with both; raise if any assignment differs. Returns the number compared."""
    from growthbook import GrowthBook

    vary_exps, gb_exps = experiments()
    entries = [EntryRequest(f"entry-{e.key}", (e,)) for e in vary_exps]
    gb = GrowthBook()
    now = time.time()
    compared = 0
    for visitor in _visitors(n, seed=1):
        outcome = decide(visitor, Profile(), entries, None, now)
        gb.set_attributes(_attributes(visitor))
        for decision, gb_exp in zip(outcome.decisions, gb_exps):
            result = gb.run(gb_exp)
            ours = decision.variant if decision.experience is not None else None
            theirs = result.variationId if result.inExperiment else None
            if ours != theirs:
                raise AssertionError(
                    f"{gb_exp.key} for visitor {visitor.id}: Vary assigned {ours}, GrowthBook {theirs}"
                )
            compared += 1
    gb.destroy() if hasattr(gb, "destroy") else None
    return compared


def run(quick: bool = False) -> list[dict[str, Any]]:
    from growthbook import GrowthBook

    batch, repeats, min_time = (100, 3, 0.05) if quick else (400, 7, 0.2)
    compared = check_agreement(1000)
    vary_exps, gb_exps = experiments()
    visitors = _visitors(batch, seed=2)
    attributes = [_attributes(v) for v in visitors]
    profile = Profile()
    now = time.time()
    one = [EntryRequest("entry-hero", (vary_exps[0],))]
    three = [EntryRequest(f"entry-{e.key}", (e,)) for e in vary_exps]
    gb = GrowthBook()
    first = gb_exps[0]

    def vary_one() -> None:
        for visitor in visitors:
            decide(visitor, profile, one, None, now)

    def vary_three() -> None:
        for visitor in visitors:
            decide(visitor, profile, three, None, now)

    def gb_one() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)
            gb.run(first)

    def gb_three() -> None:
        for attrs in attributes:
            gb.set_attributes(attrs)
            for experiment in gb_exps:
                gb.run(experiment)

    # Interleave the four timings twice and keep each one's best median (less exposed to load bursts).
    timings: dict[str, list[float]] = {"vary_one": [], "vary_three": [], "gb_one": [], "gb_three": []}
    fns = {"vary_one": vary_one, "vary_three": vary_three, "gb_one": gb_one, "gb_three": gb_three}
    for _ in range(2):
        for name, fn in fns.items():
            timings[name].append(time_per_call(fn, batch, repeats, min_time))
    t = {name: min(values) * 1e6 for name, values in timings.items()}
    gb_single = t["gb_three"] / 3  # mean cost of one gb.run over the three experiments
    method = (f"timeit: {batch} distinct new visitors per run, warm-up, median of {repeats} repeats, "
              "best of 2 interleaved passes; no segment model on either side")
    return [
        comparison(
            "decide(), 1 experience vs gb.run", "decision", "µs/call", t["vary_one"], t["gb_one"],
            TARGET_ONE, target_on="ratio", better="lower", method=method, agreement_checked=compared,
        ),
        comparison(
            "decide(), 3 experiences vs one gb.run", "decision", "µs/call", t["vary_three"], gb_single,
            TARGET_THREE, target_on="ratio", better="lower", method=method, agreement_checked=compared,
            baseline_three_runs_us=t["gb_three"],
        ),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
