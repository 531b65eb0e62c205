"""Guardrail verdicts: calibrated under continuous checking, sensitive to planted harm, and deaf to one
visitor's flood of bad survey answers (through the real aggregator and a real Valkey)."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest
from redis.asyncio import Redis
from scipy import stats

from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import Abandonment, Event, Survey, Task
from personalization.measurement.goals import MAX_CONVERSIONS_PER_MINUTE
from personalization.measurement.guardrails import (
    ArmData,
    evaluate_guardrails,
    experience_status,
    verdict,
)
from personalization.measurement.sequential import sequential_interval
from personalization.store.keys import agg_key
from personalization.types import Experience, Guardrail
from tests.personalization.measurement.stream_writes import drain, push
from tests.personalization.measurement.test_aggregation import T0, exposure

CSAT = Guardrail(metric="csat", harm="decrease")


def _experience(*guardrails: Guardrail, variants: int = 1) -> Experience:
    return Experience(
        id="h", key="hero", name="Hero", type="ab_test",
        variants=tuple(f"hero-entry-{v}" for v in range(1, variants + 1)),
        weights=tuple([1.0 / (variants + 1)] * (variants + 1)), guardrails=guardrails,
    )


def _csat_hash(arms: list[tuple[int, int]]) -> dict[str, str]:
    """{v: (answers 5, answers 2)} as the aggregator's histogram fields."""
    out = {}
    for v, (good, bad) in enumerate(arms):
        out[f"{v}:csat:5"], out[f"{v}:csat:2"] = str(good), str(bad)
    return out


def test_csat_verdict_numbers_match_a_direct_computation() -> None:
    x = _experience(CSAT)
    (result,) = evaluate_guardrails(x, _csat_hash([(318, 80), (272, 140)]))
    p_c, p_t = 318 / 398, 272 / 412
    se = math.sqrt(p_c * (1 - p_c) / 398 + p_t * (1 - p_t) / 412)
    low, high = sequential_interval(p_t - p_c, se, 810, alpha=0.05)
    assert result.estimate == pytest.approx(100 * (p_t - p_c))
    assert result.interval == pytest.approx((100 * low, 100 * high))
    assert result.harmed and high < 0 and result.alpha == 0.05
    assert result.reason == f"csat −{100 * (p_c - p_t):.1f} pts [−{-100 * low:.1f}, −{-100 * high:.1f}], 412 vs 398 answers"
    # The always-valid interval is wider than the fixed-horizon one.
    z = stats.norm.ppf(0.975)
    assert low < (p_t - p_c) - z * se and high > (p_t - p_c) + z * se


def test_bonferroni_split_minimum_sample_and_harm_directions() -> None:
    x = _experience(CSAT, Guardrail(metric="abandonment", harm="increase"), variants=2)
    ux = {"0:tasks": "150", "0:abandoned": "50", "1:tasks": "100", "1:abandoned": "100",
          "2:tasks": "50", "2:abandoned": "10"}
    verdicts = evaluate_guardrails(x, _csat_hash([(150, 50), (150, 50), (20, 5)]), [ux])
    assert [(v.metric, v.variant) for v in verdicts] == [("csat", 1), ("csat", 2), ("abandonment", 1),
                                                       ("abandonment", 2)]
    assert all(v.alpha == pytest.approx(0.05 / 4) for v in verdicts)
    by = {(v.metric, v.variant): v for v in verdicts}
    assert not by["csat", 2].harmed and "waiting for 200 per arm" in by["csat", 2].reason
    assert by["abandonment", 1].harmed and by["abandonment", 1].estimate == pytest.approx(25.0)
    assert not by["abandonment", 2].harmed and "60 vs 200 tasks" in by["abandonment", 2].reason
    # The same drop is no harm when the metric's harm is an increase.
    up = verdict(1, Guardrail(metric="csat", harm="increase"), ArmData(n=400, successes=320),
                 ArmData(n=400, successes=200), alpha=0.05)
    down = verdict(1, CSAT, ArmData(n=400, successes=320), ArmData(n=400, successes=200), alpha=0.05)
    assert down.harmed and not up.harmed


def test_means_goals_and_unknown_metrics() -> None:
    x = _experience(Guardrail(metric="ces", harm="increase"), Guardrail(metric="nps", harm="decrease"),
                    Guardrail(metric="goal:signup", harm="decrease"), Guardrail(metric="dwell", harm="decrease"))
    raw = {"0:ces:2": "300", "0:ces:3": "100", "1:ces:4": "300", "1:ces:3": "100",
           "0:nps:10": "300", "0:nps:5": "100", "1:nps:10": "200", "1:nps:5": "200",
           "0:visitors": "1000", "0:conv:signup": "100", "1:visitors": "1000", "1:conv:signup": "100"}
    by = {v.metric: v for v in evaluate_guardrails(x, raw)}
    assert by["ces"].harmed and by["ces"].estimate == pytest.approx(1.5)
    assert by["nps"].harmed and by["nps"].estimate == pytest.approx(-50.0)
    assert not by["goal:signup"].harmed and by["goal:signup"].estimate == pytest.approx(0.0)
    assert not by["dwell"].harmed and "not a guardrail metric" in by["dwell"].reason
    with pytest.raises(ValueError, match="alpha"):
        evaluate_guardrails(x, raw, alpha=1.5)


def test_experience_status_follows_schedule_then_pauses() -> None:
    x = _experience(CSAT)
    timed = Experience(**{**{f: getattr(x, f) for f in x.__struct_fields__}, "starts_at": 100.0, "ends_at": 200.0})
    assert experience_status(timed, {}, 50.0) == "scheduled"
    assert experience_status(timed, {1: "csat …"}, 150.0) == "paused_by_guardrail"
    assert experience_status(timed, {}, 150.0) == "running"
    assert experience_status(timed, {1: "csat …"}, 200.0) == "ended"


def _peeking_runs(rng: np.random.Generator, runs: int, p_c: float, p_t: float, looks: int, batch: int,
                  *, alpha: float = 0.05) -> tuple[float, float, float]:
    """Share of runs paused at some look (sequential rule), share where a one-sided fixed-horizon
    z-test fires at some look, and the mean answers per arm at the sequential pause."""
    z = stats.norm.ppf(1 - alpha)
    paused = naive = 0
    at: list[int] = []
    good_c = rng.binomial(batch, p_c, size=(runs, looks)).cumsum(axis=1)
    good_t = rng.binomial(batch, p_t, size=(runs, looks)).cumsum(axis=1)
    for r in range(runs):
        fired_seq = fired_naive = False
        for look in range(looks):
            n = batch * (look + 1)
            c, t = ArmData(n=n, successes=int(good_c[r, look])), ArmData(n=n, successes=int(good_t[r, look]))
            result = verdict(1, CSAT, c, t, alpha=alpha)
            if not fired_seq and result.harmed:
                fired_seq = True
                at.append(n)
            if not fired_naive and n >= 200:
                pc, pt = c.successes / n, t.successes / n
                se = math.sqrt((pc * (1 - pc) + pt * (1 - pt)) / n)
                fired_naive = se > 0 and (pt - pc) / se < -z
            if fired_seq and fired_naive:
                break
        paused += fired_seq
        naive += fired_naive
    return paused / runs, naive / runs, (sum(at) / len(at) if at else math.inf)


def test_no_pause_under_a_a_with_continuous_checking() -> None:
    runs, alpha = 600, 0.05
    rate, naive, _ = _peeking_runs(np.random.default_rng(18), runs, 0.8, 0.8, looks=40, batch=50)
    assert rate <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)
    # The simulation can see false pauses: the fixed-horizon test, checked as often, makes them.
    assert naive > alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_planted_csat_harm_is_found() -> None:
    rate, _, mean_at = _peeking_runs(np.random.default_rng(5), 200, 0.8, 0.7, looks=40, batch=50)
    assert rate >= 0.95 and mean_at < 1500


# End to end: the aggregator keeps one answer per metric, visitor, experience and day.

def _flood_events(flooder: str) -> list[Event]:
    events: list[Event] = []
    for i in range(440):
        v = i % 2
        events.append(Survey(visitor_id=f"v{i}", metric="csat", score=5 if i % 4 < 2 else 4, ts=T0 + 100 + i))
        events.append(Task(visitor_id=f"v{i}", name="find", success=i % 8 != v, touchpoint="search",
                           ts=T0 + 100 + i))
        if i % 10 < 2:
            events.append(Abandonment(visitor_id=f"v{i}", task="find", touchpoint="search", ts=T0 + 101 + i))
    events += [Survey(visitor_id=flooder, metric="csat", score=1, ts=T0 + 1000 + n) for n in range(1500)]
    return events


def _text(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _aggregate(redis_url: str, max_rate: int) -> tuple[dict, list[dict]]:
    async def body() -> tuple[dict, list[dict]]:
        redis = Redis.from_url(redis_url)
        try:
            await push(redis, [exposure(f"v{i}", i % 2, T0 + i) for i in range(440)], [])
            aggregator = Aggregator(redis, consumer="c1", exposure_grace_s=0.0,
                                    max_conversions_per_minute=max_rate)
            await drain(aggregator)
            await push(redis, [], _flood_events("v1"))  # v1 is in variant 1
            await drain(aggregator)
            all_hash = _text(await redis.hgetall(agg_key("hero", "all")))
            tps = await redis.smembers(agg_key("hero", "tps"))
            return all_hash, [_text(await redis.hgetall(agg_key("hero", f"ux:{tp.decode()}"))) for tp in tps]
        finally:
            await redis.aclose()

    return asyncio.run(body())


def test_one_visitors_flood_of_csat_1_cannot_pause(redis_url: str) -> None:
    x = _experience(CSAT, Guardrail(metric="task_success", harm="decrease"),
                    Guardrail(metric="abandonment", harm="increase"))
    all_hash, ux = _aggregate(redis_url, MAX_CONVERSIONS_PER_MINUTE)
    by = {v.metric: v for v in evaluate_guardrails(x, all_hash, ux)}
    assert (by["csat"].n_control, by["csat"].n_variant) == (220, 220)
    assert int(all_hash["discarded:survey_repeat"]) == 1500
    assert not any(v.harmed for v in by.values()) and by["task_success"].n_variant == 220
    assert by["abandonment"].n_variant == 264 and by["abandonment"].estimate == pytest.approx(0.0)


def test_without_the_one_answer_rule_the_same_flood_would_pause(redis_url: str) -> None:
    all_hash, ux = _aggregate(redis_url, 0)  # the rule switched off: every answer counts
    (result,) = evaluate_guardrails(_experience(CSAT), all_hash, ux)
    assert result.n_variant == 1720 and result.harmed
