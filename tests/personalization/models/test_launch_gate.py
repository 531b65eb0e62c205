"""The launch gate's rule and its bounds: rows, time, what has no gate (no HTTP: see
tests/api/http/test_launch_gate.py for the gate as ``PUT /v1/models/active`` reads it)."""

from __future__ import annotations

import asyncio
import time

import msgspec
import numpy as np
from redis.asyncio import Redis

from personalization.decision.features import policy_context
from personalization.demo.logged_bandit import make_world
from personalization.measurement.events import Conversion
from personalization.models.files import dump_bytes
from personalization.models.launch_gate import (
    evaluate_gate,
    judge,
    load_gate,
    record_force,
)
from personalization.models.ope import Estimate, OffPolicyEstimate
from personalization.models.policy import train_reward_model
from personalization.models.registry import ModelRegistry
from personalization.models.segment_model import train_segment_model
from personalization.types import Experience, Exposure, new_exposure_id
from tests.api.logs import store_logs

BANDIT = Experience(
    id="b", key="banner", name="Banner", type="bandit", variants=("v1", "v2"), weights=(1 / 3, 1 / 3, 1 / 3),
    goals=("signup",),
)
DAY = 86_400.0


def _estimate(dr: float, low: float, logged: float) -> OffPolicyEstimate:
    same = Estimate(value=0.0, interval=(0.0, 0.0))
    return OffPolicyEstimate(
        ips=same, snips=same, dr=Estimate(value=dr, interval=(low, dr + 0.05)),
        logged=Estimate(value=logged, interval=(logged - 0.01, logged + 0.01)), ess=100.0, n=1000, clipped=0,
    )


def test_the_rule_is_the_lower_bound_against_the_logged_value() -> None:
    assert judge("pol-a", "banner", _estimate(0.2, 0.15, 0.15), 1.0, 2.0, 100).status == "pass"  # equal passes
    failed = judge("pol-a", "banner", _estimate(0.2, 0.1499, 0.15), 1.0, 2.0, 100)
    assert failed.status == "fail" and failed.lower_bound == 0.1499 and "0.1499 < " in failed.detail
    assert judge("pol-a", "banner", _estimate(0.2, float("nan"), 0.1), 1.0, 2.0, 100).status == "fail"


def _contexts(x: np.ndarray) -> list[dict[str, float | str]]:
    return [policy_context("web", "US", None, {f"f{j}": float(v) for j, v in enumerate(row)}) for row in x]


def _logs_and_policy(redis_url: str, n: int) -> tuple[bytes, bytes, str]:
    world = make_world(3, 3, seed=5)
    train = world.log(1500, seed=1)
    pipeline, card = train_reward_model(
        _contexts(train.contexts), train.actions.tolist(), train.rewards.tolist(), 3, experience="banner",
        created_at=1e9,
    )
    sample = world.log(n, seed=2)
    base = time.time() - 10 * DAY
    exposures, events = [], []
    for i, (x, a, p, r) in enumerate(zip(sample.contexts, sample.actions, sample.propensities, sample.rewards)):
        exposures.append(Exposure(
            id=new_exposure_id(), ts=base + i, visitor_id=f"v{i}", session_id=None, channel="web", entry_id="e",
            variant_entry_id="e", experience="banner", variant=int(a), is_control=int(a) == 0, holdout=False,
            propensity=float(p), segments={f"f{j}": float(v) for j, v in enumerate(x)}, country="US",
        ))
        if r:
            events.append(Conversion(visitor_id=f"v{i}", goal="signup", ts=base + i + 60.0))
    store_logs(redis_url, exposures, events)
    return dump_bytes(pipeline), msgspec.json.encode(card), card.version


def test_the_gate_is_bounded_in_rows_and_time_and_seeded(redis_url: str) -> None:
    model, card, version = _logs_and_policy(redis_url, 600)

    async def body() -> None:
        redis = Redis.from_url(redis_url)
        registry = ModelRegistry(redis)
        await registry.register(model, card)
        bounded = await evaluate_gate(redis, registry, version, {"banner": BANDIT}, max_rows=250, n_bootstrap=100)
        assert bounded is not None and bounded.status in ("pass", "fail")
        assert bounded.n == 250 and bounded.max_rows == 250 and bounded.n_bootstrap == 100
        again = await evaluate_gate(redis, registry, version, {"banner": BANDIT}, max_rows=250, n_bootstrap=100)
        assert again is not None and (again.dr, again.logged, again.status) == (bounded.dr, bounded.logged, bounded.status)
        assert (await load_gate(redis, version)).verdict == again  # stored with the card

        slow = await evaluate_gate(redis, registry, version, {"banner": BANDIT}, timeout_s=1e-6)
        assert slow is not None and slow.status == "error" and "longer than" in slow.detail
        missing = await evaluate_gate(redis, registry, version, {})
        assert missing is not None and missing.status == "error" and "not in the served content" in missing.detail

        forced = await record_force(redis, version, "admin key sha256:abc", "error", 5.0)
        stored = await load_gate(redis, version)
        assert stored.forced == forced and stored.verdict == missing  # two fields: neither overwrites the other

        rows = [{"channel": "web", "visits": float(i % 7)} for i in range(300)]
        labels = {"loyal": [i % 3 == 0 for i in range(300)]}
        pipeline, seg_card = train_segment_model(rows, labels, [float(i) for i in range(300)], created_at=1e9)
        segments = await registry.register(dump_bytes(pipeline), msgspec.json.encode(seg_card))
        assert await evaluate_gate(redis, registry, segments.version, {"banner": BANDIT}) is None  # no gate
        await redis.aclose()

    asyncio.run(body())
