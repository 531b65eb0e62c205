"""``vary simulate --harm``: harm planted in one variant's answers, at the simulator level (issue #18)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.cli.data import add_data_parsers
from content.compile import compile_snapshot
from content.sources import ExportFileSource, demo_space_path
from personalization.demo.harm import Harm, apply_harms, harm_factor, parse_harm
from personalization.demo.offline import VisitorRun, run_visitors
from personalization.demo.shop import SHIPPING_TEST, Effects, plan_visitor, purchase_probability
from personalization.demo.simulation import simulate
from personalization.models.segment_model import load_active_model

VISITORS = 3000


@pytest.mark.parametrize(
    ("text", "harm"),
    [
        ("csat:banner-shipping-test:2:0.5", Harm("csat", "banner-shipping-test", 2, 0.5)),
        ("goal:purchase:hero-sale:1:0.25", Harm("goal:purchase", "hero-sale", 1, 0.25)),
        (" task_success:x:1:1 ", Harm("task_success", "x", 1, 1.0)),
    ],
)
def test_a_harm_is_read_from_the_right(text: str, harm: Harm) -> None:
    assert parse_harm(text) == harm


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("csat:x:1", "expected <metric>:<experience>:<variant>:<effect>"),
        ("revenue:x:1:0.5", "metric 'revenue' is not one"),
        ("goal:lead:x:1:0.5", "metric 'goal:lead' is not one"),
        ("csat::1:0.5", "no experience key"),
        ("csat:x:one:0.5", "variant 'one' is not a number"),
        ("csat:x:0:0.5", "variant must be 1 or more"),
        ("csat:x:1:1.5", "effect must be in (0, 1]"),
        ("csat:x:1:nan", "effect must be in (0, 1]"),
        ("csat:x:1:big", "effect 'big' is not a number"),
    ],
)
def test_a_bad_harm_says_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_harm(text)
    assert said in str(caught.value)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vary")
    add_data_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def test_the_cli_takes_repeated_harms_and_refuses_a_bad_one(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["simulate", "--harm", "csat:banner-shipping-test:2:0.5",
                                 "--harm", "goal:signup:newsletter-copy:1:0.3"])
    assert args.harm == [Harm("csat", "banner-shipping-test", 2, 0.5), Harm("goal:signup", "newsletter-copy", 1, 0.3)]
    assert _parser().parse_args(["simulate"]).harm == []
    with pytest.raises(SystemExit):
        _parser().parse_args(["simulate", "--harm", "csat:x:1:2"])
    assert "effect must be in (0, 1]" in capsys.readouterr().err


# --- the planted truth, decided offline with the real decision code --------------------------------


@pytest.fixture(scope="module")
def runs(model_dir: Path) -> tuple[list[VisitorRun], list[VisitorRun]]:
    snapshot = compile_snapshot(ExportFileSource(demo_space_path()).load())
    model = load_active_model(model_dir / "models")
    harmed = Effects(harms=(Harm("csat", SHIPPING_TEST, 2, 0.5), Harm("task_success", SHIPPING_TEST, 2, 0.5)))
    return list(run_visitors(snapshot, model, VISITORS)), list(run_visitors(snapshot, model, VISITORS, effects=harmed))


def _answers(runs: list[VisitorRun], variant: int, kind: str) -> tuple[int, int]:
    """(good, all) CSAT answers (score ≥ 4) or task attempts (success) of the visitors shown ``variant``."""
    good = total = 0
    for run in runs:
        if run.served.get(SHIPPING_TEST) != variant:
            continue
        for event in run.events:
            if kind == "csat" and event["type"] == "survey" and event.get("metric") == "csat":
                total += 1
                good += event["score"] >= 4
            elif kind == "task" and event["type"] == "task":
                total += 1
                good += bool(event["success"])
    return good, total


def test_only_the_harmed_arms_answers_change(runs: tuple[list[VisitorRun], list[VisitorRun]]) -> None:
    plain, harmed = runs
    changed = [b for a, b in zip(plain, harmed, strict=True) if a.events != b.events]
    assert changed and all(run.served.get(SHIPPING_TEST) == 2 for run in changed)
    for a, b in zip(plain, harmed, strict=True):  # the same visitors, assignments and journeys otherwise
        assert a.served == b.served
        assert [(e["type"], e.get("metric")) for e in a.events] == [(e["type"], e.get("metric")) for e in b.events]


@pytest.mark.parametrize("kind", ["csat", "task"])
def test_the_harmed_arm_answers_worse_by_the_planted_effect(
    runs: tuple[list[VisitorRun], list[VisitorRun]], kind: str
) -> None:
    plain, harmed = runs
    good_before, n = _answers(plain, 2, kind)
    good_after, n_after = _answers(harmed, 2, kind)
    assert n == n_after and n > 100  # the site's CSAT pop-up gives the arm enough answers to test
    # Each good answer turns bad with probability 0.5: binomial(good_before, 0.5) stay good.
    kept = good_after / good_before
    assert abs(kept - 0.5) < 3 * (0.25 / good_before) ** 0.5
    # The other arms answer exactly as before.
    for variant in (0, 1):
        assert _answers(plain, variant, kind) == _answers(harmed, variant, kind)


def test_csat_answers_are_frequent_enough_for_a_guardrail() -> None:
    """The site's pop-up: about 15 % of visitors answer CSAT, from a random stream of its own."""
    effects = Effects()
    asked = 0
    for index in range(4000):
        visitor, _ = plan_visitor(0, index, effects)
        asked += any(e.get("metric") == "csat" and e["touchpoint"] == "home" for e in _journey_of(visitor, effects))
    assert abs(asked / 4000 - effects.site_csat_rate) < 3 * (0.15 * 0.85 / 4000) ** 0.5


def _journey_of(visitor: Any, effects: Effects) -> list[dict[str, Any]]:
    from personalization.demo.shop import journey_events

    _, rng = plan_visitor(0, visitor.index, effects)
    return journey_events(visitor, {}, rng, effects)


def test_a_goal_harm_lowers_that_goal_for_that_variant_only() -> None:
    visitor, _ = plan_visitor(0, 1)
    harms = (Harm("goal:purchase", "hero-sale", 1, 0.4),)
    assert harm_factor(harms, "purchase", {"hero-sale": 1}) == pytest.approx(0.6)
    assert harm_factor(harms, "purchase", {"hero-sale": 0}) == 1.0
    assert harm_factor(harms, "signup", {"hero-sale": 1}) == 1.0
    served = {"hero-sale": 1}
    assert purchase_probability(visitor, served, Effects(harms=harms)) == pytest.approx(
        0.6 * purchase_probability(visitor, served, Effects()))


def test_nps_and_ces_answers_turn_bad() -> None:
    events = [{"type": "survey", "metric": "nps", "score": 10}, {"type": "survey", "metric": "ces", "score": 1}]
    harms = (Harm("nps", "x", 1, 1.0), Harm("ces", "x", 1, 1.0))
    out = apply_harms([dict(e) for e in events], harms, {"x": 1}, "v1", 1)
    assert out[0]["score"] <= 6 and out[1]["score"] >= 6
    assert apply_harms([dict(e) for e in events], harms, {"x": 2}, "v1", 1) == events


# --- through HTTP: a paused variant shows the baseline, and its visitors are not harmed --------------


def test_visitors_shown_the_baseline_of_a_paused_variant_are_not_harmed() -> None:
    """The simulator harms what a visitor *saw*: the server's answer for a paused variant carries the
    assigned variant (intent to treat) but the baseline entry, so the answers stay unharmed."""
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if request.url.path == "/v1/personalize":
            return httpx.Response(200, json={"entries": [
                {"entry_id": "bannerShipping", "experience": SHIPPING_TEST, "variant": 2,
                 "variant_entry_id": "bannerShipping", "holdout": False,
                 "reason": "paused: guardrail csat harmed (…)"},
                {"entry_id": "heroHome", "variant": 0, "variant_entry_id": "heroHome",
                 "reason": "global holdout: baseline content for every experience (5% of visitors)"},
            ]})
        sent.extend(body["events"])
        return httpx.Response(200, json={"accepted": len(body["events"]), "dropped": 0, "rejected": []})

    harms = (Harm("csat", SHIPPING_TEST, 2, 1.0),)
    plain = asyncio.run(simulate("http://vary", "k", 300, transport=httpx.MockTransport(handler)))
    plain_events, sent[:] = list(sent), []
    summary = asyncio.run(simulate("http://vary", "k", 300, effects=Effects(harms=harms),
                                   transport=httpx.MockTransport(handler)))
    assert summary.errors == 0 and summary.paused_shown == 300 and summary.global_holdout == 300
    assert summary.served[SHIPPING_TEST] == {"2": 300}  # counted as assigned (intent to treat)
    assert sorted(map(_answer, sent)) == sorted(map(_answer, plain_events))  # nobody harmed
    assert Counter(e["type"] for e in sent)["survey"] > 0 and plain.errors == 0


def _answer(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event["visitor_id"], event["session_id"], event["type"], event.get("metric"), event.get("score"))
