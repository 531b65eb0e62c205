"""Training data from the exposure and event streams, against the real Valkey server."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from redis.asyncio import Redis

from personalization.measurement.events import Conversion, PageView, Purchase
from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.types import new_exposure_id
from personalization.decision.features import policy_context
from personalization.models.logged import (
    logged_bandit_from_streams,
    logged_decisions,
    segment_training_from_events,
)
from personalization.models.streams import read_stream
from personalization.measurement.recorder import EventRecorder
from personalization.types import EXPOSURE_DECODER, EXPOSURE_ENCODER, Experience, Exposure

DAY = 86_400.0
#: Thirty days ago: old enough that every test window (≤ 7 days) has ended.
BASE = time.time() - 30 * DAY

EXPERIENCE = Experience(
    id="exp1",
    key="banner-bandit",
    name="banner",
    type="bandit",
    variants=("b1", "b2"),
    weights=(1 / 3, 1 / 3, 1 / 3),
    goals=("signup", "purchase"),
)


def _run(coro):  # noqa: ANN001, ANN202 - small helper for async bodies
    return asyncio.run(coro)


def _exposure(
    visitor: str | None,
    ts: float,
    *,
    variant: int = 0,
    experience: str | None = "banner-bandit",
    channel: str = "web",
    country: str | None = "US",
    device: str | None = "mobile",
    propensity: float = 1 / 3,
    segments: dict[str, float] | None = None,
) -> Exposure:
    return Exposure(
        id=new_exposure_id(),
        ts=ts,
        visitor_id=visitor,
        session_id=None,
        channel=channel,
        entry_id="banner",
        variant_entry_id="banner" if variant == 0 else f"b{variant}",
        experience=experience,
        variant=variant,
        is_control=variant == 0,
        holdout=False,
        propensity=propensity,
        segments=segments or {},
        country=country,
        device=device,
    )


async def _write(redis: Redis, exposures: list[Exposure]) -> None:
    writer = ExposureWriter(redis, batch_size=7)
    writer.submit(exposures)
    await writer.flush()


def test_read_stream_in_chunks_with_ts_bounds(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        for i in range(12):  # ids = write time = ts, as when the writer keeps up
            ts = 1_700_000_000.0 + i
            await redis.xadd(EXPOSURE_STREAM, {"data": EXPOSURE_ENCODER.encode(_exposure(f"v{i}", ts))}, id=f"{int(ts * 1000)}-0")
        await redis.xadd(EXPOSURE_STREAM, {"data": b"not json"}, id="1700000020000-0")
        every = [e async for e in read_stream(redis, EXPOSURE_STREAM, EXPOSURE_DECODER, chunk=5)]
        assert [e.visitor_id for e in every] == [f"v{i}" for i in range(12)]  # the corrupt entry skipped
        bounded = [
            e.visitor_id
            async for e in read_stream(
                redis, EXPOSURE_STREAM, EXPOSURE_DECODER, 1_700_000_003.0, 1_700_000_007.0, chunk=2, early_s=0, late_s=0
            )
        ]
        assert bounded == ["v3", "v4", "v5", "v6", "v7"]
        with pytest.raises(ValueError):
            [e async for e in read_stream(redis, EXPOSURE_STREAM, EXPOSURE_DECODER, chunk=0)]
        await redis.aclose()

    _run(body())


def test_logged_bandit_rows_rewards_and_first_exposure_only(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        seg = {"price_sensitive": 0.8}
        await _write(
            redis,
            [
                _exposure("a", BASE + 10, variant=1, segments=seg, propensity=0.5),
                _exposure("b", BASE + 20, variant=2, channel="ios", country=None, device=None),
                _exposure("c", BASE + 30, variant=0),
                _exposure("a", BASE + 40, variant=1, propensity=0.5),  # repeat view: not a new row
                _exposure("d", BASE + 50, variant=2),
                _exposure("e", BASE + 5, experience="other"),  # another experience
                _exposure(None, BASE + 60, variant=1),  # no analytics consent: cannot be joined
                _exposure("f", BASE + 70, variant=7),  # a variant the experience no longer has
            ],
        )
        recorder = EventRecorder(redis)
        await recorder.record(
            [
                Conversion(visitor_id="a", goal="signup", ts=BASE + 10 + 3 * DAY),  # in the window
                Purchase(visitor_id="b", order_id="o1", value=10.0, ts=BASE + 20 + 6.9 * DAY),  # purchase goal
                Conversion(visitor_id="c", goal="signup", ts=BASE + 30 + 8 * DAY),  # after the window
                Conversion(visitor_id="d", goal="newsletter", ts=BASE + 51),  # not a goal
                Conversion(visitor_id="d", goal="signup", ts=BASE + 49),  # before the exposure
                PageView(visitor_id="a", ts=BASE + 11),
            ]
        )
        decisions = await logged_decisions(redis, EXPERIENCE)
        logged = decisions.bandit
        assert decisions.visitor_ids == ["a", "b", "c", "d"]
        assert decisions.timestamps == [BASE + 10, BASE + 20, BASE + 30, BASE + 50]
        assert logged.n_actions == 3
        assert logged.actions.tolist() == [1, 2, 0, 2]
        assert logged.propensities.tolist() == pytest.approx([0.5, 1 / 3, 1 / 3, 1 / 3])
        assert logged.rewards.tolist() == [1.0, 1.0, 0.0, 0.0]
        assert logged.contexts[0] == policy_context("web", "US", "mobile", seg)
        assert logged.contexts[1] == {"channel": "ios"}

        # A shorter window, or other goals, change only the rewards.
        short = await logged_bandit_from_streams(redis, EXPERIENCE, window_s=1 * DAY)
        assert short.rewards.tolist() == [0.0, 0.0, 0.0, 0.0]
        newsletter = await logged_bandit_from_streams(redis, EXPERIENCE, goals=["newsletter"])
        assert newsletter.rewards.tolist() == [0.0, 0.0, 0.0, 1.0]
        assert np.array_equal(newsletter.actions, logged.actions)
        await redis.aclose()

    _run(body())


def test_no_exposures_give_an_empty_log(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        logged = await logged_bandit_from_streams(redis, EXPERIENCE)
        assert len(logged) == 0 and logged.n_actions == 3
        await redis.aclose()

    _run(body())


def test_segment_labels_from_events(redis_url: str) -> None:
    async def body() -> None:
        redis = Redis.from_url(redis_url)
        now = BASE + 20 * DAY
        await _write(
            redis,
            [
                _exposure("a", BASE + 1, experience=None, channel="web", country="de", device="Mobile"),
                _exposure("a", BASE + 2 * DAY, channel="ios"),  # later exposure: the first one counts
                _exposure("b", BASE + 2, experience=None, channel="email", country=None, device=None),
                _exposure("c", BASE + 3, experience=None),
                _exposure("late", now - 1 * DAY, experience=None),  # window not over yet: left out
            ],
        )
        await EventRecorder(redis).record(
            [
                Purchase(visitor_id="a", order_id="o1", value=5.0, ts=BASE + 1 + 2 * DAY),
                Conversion(visitor_id="b", goal="purchase", ts=BASE + 2 + 9 * DAY),  # after 7 days
                Conversion(visitor_id="c", goal="signup", ts=BASE + 4),  # another goal
                Purchase(visitor_id="late", order_id="o2", value=5.0, ts=now - 0.5 * DAY),
            ]
        )
        rows, labels, timestamps = await segment_training_from_events(redis, "purchase", 7, now=now)
        assert labels == {"converted_purchase": [1, 0, 0]}
        assert timestamps == [BASE + 1, BASE + 2, BASE + 3]
        # Only what the exposure recorded, normalised as build_features does; no profile features.
        assert rows[0] == {"channel": "web", "device": "mobile", "country": "DE"}
        assert rows[1] == {"channel": "email"}
        signup = await segment_training_from_events(redis, "signup", 7, now=now)
        assert signup[1] == {"converted_signup": [0, 0, 1]}
        with pytest.raises(ValueError):
            await segment_training_from_events(redis, "purchase", 0, now=now)
        await redis.aclose()

    _run(body())
