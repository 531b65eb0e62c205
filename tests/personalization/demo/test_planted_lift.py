"""The simulator's known truth, recovered: hero-sale's planted personalization lift, and a journey whose
every stage is reached (seeded visitors decided in-process by the real decision code, no HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from content.compile import compile_snapshot
from content.snapshot import ContentSnapshot
from content.sources import ExportFileSource, demo_space_path
from personalization.demo.offline import VisitorRun, run_visitors
from personalization.demo.power import DEMO_PERSONALIZATION_LIFT
from personalization.demo.shop import HERO_SALE, Effects
from personalization.measurement.stats import relative_uplift
from personalization.models.segment_model import load_active_model

_DETAIL = {"conversion": "goal", "task": "name", "survey": "metric"}


@pytest.fixture(scope="module")
def snapshot() -> ContentSnapshot:
    return compile_snapshot(ExportFileSource(demo_space_path()).load())


def _runs(snapshot: ContentSnapshot, model_dir: Path, visitors: int, effects: Effects = Effects()) -> list[VisitorRun]:
    model = load_active_model(model_dir / "models")
    return [r for r in run_visitors(snapshot, model, visitors, seed=1, effects=effects) if r.visitor.analytics]


def _lift(runs: list[VisitorRun]) -> tuple[float | None, tuple[float, float] | None]:
    """hero-sale's personalization lift by intent to treat, as the results compute it."""
    audience = [r for r in runs if HERO_SALE in r.served]
    held = [r for r in audience if HERO_SALE in r.holdout]
    treated = [r for r in audience if HERO_SALE not in r.holdout]
    return relative_uplift(sum(r.bought() for r in held), len(held), sum(r.bought() for r in treated), len(treated))


def test_the_planted_personalization_lift_is_recovered(snapshot: ContentSnapshot, model_dir: Path) -> None:
    lift, interval = _lift(_runs(snapshot, model_dir, 20_000))
    assert lift is not None and interval is not None
    assert interval[0] < DEMO_PERSONALIZATION_LIFT < interval[1]  # the truth is inside the 95 % interval
    assert interval[0] > 0  # and 20,000 visitors find it


def test_without_a_planted_lift_there_is_none_to_find(snapshot: ContentSnapshot, model_dir: Path) -> None:
    lift, interval = _lift(_runs(snapshot, model_dir, 20_000, Effects(personalization_lift=0.0)))
    assert lift is not None and interval is not None
    assert interval[0] < 0 < interval[1]


def test_every_journey_stage_is_reached_and_left_for_the_next(snapshot: ContentSnapshot, model_dir: Path) -> None:
    stages = snapshot.journeys["shopping"].stages
    runs = _runs(snapshot, model_dir, 3000)
    reached = [0] * len(stages)
    continued = [0] * len(stages)
    for run in runs:
        # which stages each event puts the visitor at; events are sent (and stamped) in this order
        at = [
            {k for k, stage in enumerate(stages)
             if stage.matches(e["type"], e.get("touchpoint"), e.get(_DETAIL.get(e["type"], "")))}
            for e in run.events
        ]
        for k in range(len(stages)):
            first = next((i for i, ks in enumerate(at) if k in ks), None)
            if first is None:
                continue
            reached[k] += 1
            if any(k + 1 in ks for ks in at[first:]):
                continued[k] += 1
    assert all(reached), dict(zip([s.key for s in stages], reached, strict=True))
    assert all(continued[:-1]), dict(zip([s.key for s in stages], continued, strict=True))
    buy = [s.key for s in stages].index("buy")
    assert continued[buy] < reached[buy]  # a drop-off, but not 100 %


def test_surveys_and_tasks_give_the_ux_and_cx_tiles_numbers(snapshot: ContentSnapshot, model_dir: Path) -> None:
    events = [e for run in _runs(snapshot, model_dir, 3000) for e in run.events]
    metrics = {e["metric"] for e in events if e["type"] == "survey"}
    assert {"nps", "csat", "ces"} <= metrics
    tasks = [e for e in events if e["type"] == "task"]
    assert {t["name"] for t in tasks} == {"search", "checkout"}
    assert {t["success"] for t in tasks} == {True, False}
    assert any(e["type"] == "abandonment" for e in events)


def test_vary_simulate_plants_the_calculated_lift_unless_told_otherwise() -> None:
    import argparse

    from api.cli.data import add_data_parsers

    parser = argparse.ArgumentParser()
    add_data_parsers(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["simulate"]).personalization_lift is None  # → DEMO_PERSONALIZATION_LIFT
    assert parser.parse_args(["simulate", "--personalization-lift", "0.25"]).personalization_lift == 0.25
    assert Effects().personalization_lift == DEMO_PERSONALIZATION_LIFT
