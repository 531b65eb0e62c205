"""The journey map rebuilt from hand-written exposures and events, against the real Valkey server.

Twelve visitors across web, iOS, Android and email: four on control, three on variant 1, one on
variant 2 with no events, one holdout, and three who cannot be attributed. Every number asserted
below is worked out by hand in the comments next to the events.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from personalization.errors import InvalidPeriod
from personalization.measurement.events import (
    Abandonment,
    Click,
    Conversion,
    Event,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.measurement.journey_report import DEFAULT_PERIOD_S, JourneyMap, journey_window
from personalization.measurement.journeys import (
    ALL_VISITORS,
    HOLDOUT,
    journey_map,
)
from personalization.measurement import journeys
from personalization.measurement.recorder import EventRecorder
from personalization.store.exposures import EXPOSURE_STREAM
from personalization.store.identity import PERSON_FIELD
from personalization.store.keys import profile_key
from personalization.types import (
    EXPOSURE_ENCODER,
    Experience,
    Exposure,
    Journey,
    JourneyStage,
    new_exposure_id,
)

#: Two hours ago: the stream ids (write time, now) stay within a day of the events' own ts.
T0 = time.time() - 2 * 3600.0
SINCE, UNTIL = T0 - 3600.0, T0 + 3600.0

SHOPPING = Journey(
    id="journeyShopping",
    key="shopping",
    name="Shopping journey",
    stages=(
        JourneyStage(key="find", name="Find", touchpoints=("home", "search", "category"), event_types=("page_view",)),
        JourneyStage(key="evaluate", name="Evaluate", touchpoints=("product", "reviews"),
                     event_types=("page_view", "click")),
        JourneyStage(key="decide", name="Decide", touchpoints=("cart", "checkout"), event_types=("click", "task")),
        JourneyStage(key="buy", name="Buy", touchpoints=("checkout", "confirmation"),
                     event_types=("purchase", "conversion:purchase")),
        JourneyStage(key="engage", name="Engage", touchpoints=("account", "email"),
                     event_types=("survey", "feedback", "page_view")),
    ),
)

EXPERIENCE = Experience(
    id="bannerShippingTest",
    key="banner-shipping-test",
    name="Shipping banner",
    type="ab_test",
    variants=("bannerShippingFree", "bannerShippingFast"),
    weights=(1 / 3, 1 / 3, 1 / 3),
)


def _exposure(visitor: str | None, dt: float, variant: int, *, experience: str = EXPERIENCE.key,
              holdout: bool = False) -> Exposure:
    return Exposure(
        id=new_exposure_id(), ts=T0 + dt, visitor_id=visitor, session_id=None, channel="web",
        entry_id="bannerShipping", variant_entry_id="bannerShipping", experience=experience,
        variant=variant, is_control=variant == 0, holdout=holdout, propensity=1 / 3,
    )


EXPOSURES = [
    _exposure("v1", -5, 0), _exposure("v1", 400, 1),  # the first exposure decides: control
    _exposure("v2", -5, 0), _exposure("v3", -5, 0), _exposure("v4", -5, 0),
    _exposure("v5", -5, 1), _exposure("v6", -5, 1), _exposure("v7", -5, 1),
    _exposure("v8", -5, 2),  # exposed, never seen again
    _exposure("h1", -5, 0, holdout=True),
    _exposure("v9", -5, 1, experience="another-test"),  # not this experience
    _exposure("v11", -5, 7),  # a variant the experience no longer has
    _exposure(None, -5, 1),  # no analytics consent
]


def _at(dt: float) -> float:
    return T0 + dt


EVENTS: list[Event] = [
    # --- control -------------------------------------------------------------------------------
    # v1: find 0 → evaluate 60 → decide 200 → buy 300 → engage 1000, switching web → iOS → email.
    PageView(visitor_id="v1", channel="web", touchpoint="home", ts=_at(0)),
    PageView(visitor_id="v1", channel="web", touchpoint="product", ts=_at(60)),
    Click(visitor_id="v1", channel="web", touchpoint="product", ts=_at(100)),
    Click(visitor_id="v1", channel="ios", touchpoint="cart", ts=_at(200)),
    Task(visitor_id="v1", channel="ios", touchpoint="checkout", name="checkout", success=True,
         duration_ms=3000, ts=_at(250)),
    Purchase(visitor_id="v1", channel="ios", touchpoint="checkout", order_id="o1", value=40.0, ts=_at(300)),
    Survey(visitor_id="v1", channel="email", touchpoint="email", metric="nps", score=10, ts=_at(1000)),
    # v2: find 0 → evaluate 30, then abandons at checkout (an abandonment is no "decide" event).
    PageView(visitor_id="v2", channel="web", touchpoint="home", ts=_at(0)),
    PageView(visitor_id="v2", channel="web", touchpoint="product", ts=_at(30)),
    Abandonment(visitor_id="v2", channel="web", touchpoint="checkout", task="checkout", ts=_at(90)),
    # v3: evaluate 0 *before* find 50, then decide 120: reaches find but not evaluate after it.
    PageView(visitor_id="v3", channel="web", touchpoint="product", ts=_at(0)),
    PageView(visitor_id="v3", channel="web", touchpoint="home", ts=_at(50)),
    Click(visitor_id="v3", channel="web", touchpoint="cart", ts=_at(120)),
    Task(visitor_id="v3", channel="web", touchpoint="checkout", name="checkout", success=False,
         duration_ms=9000, ts=_at(130)),
    # v4: a bounce on iOS; an older visit is outside the period.
    PageView(visitor_id="v4", channel="ios", touchpoint="home", ts=_at(0)),
    PageView(visitor_id="v4", channel="ios", touchpoint="product", ts=_at(-10 * 86_400)),
    # --- variant 1 -----------------------------------------------------------------------------
    # v5: email first, then find 10 → evaluate 20 → decide 40 → buy (a purchase conversion) 100 → engage 200.
    Click(visitor_id="v5", channel="email", touchpoint="email", ts=_at(0)),
    PageView(visitor_id="v5", channel="web", touchpoint="home", ts=_at(10)),
    PageView(visitor_id="v5", channel="web", touchpoint="product", ts=_at(20)),
    Click(visitor_id="v5", channel="web", touchpoint="cart", ts=_at(40)),
    Conversion(visitor_id="v5", channel="web", touchpoint="confirmation", goal="purchase", ts=_at(100)),
    Conversion(visitor_id="v5", channel="web", touchpoint="confirmation", goal="signup", ts=_at(110)),
    PageView(visitor_id="v5", channel="web", touchpoint="account", ts=_at(200)),
    # v6: find 0 → evaluate 500 (Android) → decide 700, then an unhappy CSAT at checkout.
    PageView(visitor_id="v6", channel="web", touchpoint="category", ts=_at(0)),
    PageView(visitor_id="v6", channel="android", touchpoint="product", ts=_at(500)),
    Click(visitor_id="v6", channel="android", touchpoint="reviews", ts=_at(600)),
    Click(visitor_id="v6", channel="android", touchpoint="cart", ts=_at(700)),
    Survey(visitor_id="v6", channel="android", touchpoint="checkout", metric="csat", score=2, ts=_at(800)),
    # v7: two home views, collapsed into one step.
    PageView(visitor_id="v7", channel="web", touchpoint="home", ts=_at(0)),
    PageView(visitor_id="v7", channel="web", touchpoint="home", ts=_at(20)),
    # --- holdout and unattributable --------------------------------------------------------------
    PageView(visitor_id="h1", channel="web", touchpoint="home", ts=_at(0)),
    PageView(visitor_id="u1", channel="web", touchpoint="home", ts=_at(5)),  # never exposed
    PageView(visitor_id="v9", channel="kiosk", touchpoint="search", ts=_at(5)),  # another experience
    PageView(visitor_id="v11", channel="web", touchpoint="home", ts=_at(5)),  # a variant gone
]


async def _seed(redis: Redis) -> None:
    for exposure in EXPOSURES:
        await redis.xadd(EXPOSURE_STREAM, {"data": EXPOSURE_ENCODER.encode(exposure)})
    await EventRecorder(redis).record(EVENTS)


def _maps(redis_url: str, *calls: dict[str, Any]) -> list[JourneyMap]:
    """Seed the streams once, then compute one map per set of keyword arguments."""

    async def body() -> list[JourneyMap]:
        redis = Redis.from_url(redis_url)
        try:
            await _seed(redis)
            return [await journey_map(redis, SHOPPING, **kwargs) for kwargs in calls]
        finally:
            await redis.aclose()

    return asyncio.run(body())


def _map(redis_url: str, **kwargs: Any) -> JourneyMap:
    return _maps(redis_url, kwargs)[0]


def _stages(result: JourneyMap, variant: str) -> dict[str, Any]:
    return {s.key: s for s in result.variants[variant].stages}


def test_reach_drop_off_and_time_per_variant(redis_url: str) -> None:
    result = _map(redis_url, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
    assert list(result.variants) == ["0", "1", "2", HOLDOUT]
    assert [v.label for v in result.variants.values()] == [
        "control", "bannerShippingFree", "bannerShippingFast", "holdout",
    ]
    assert [v.visitors for v in result.variants.values()] == [4, 3, 1, 1]
    assert result.unexposed_visitors == 3  # u1, v9, v11
    assert not result.truncated and result.experience == "banner-shipping-test"
    assert result.exposures_read == len(EXPOSURES) and result.events_read == len(EVENTS) - 1  # one too old

    control = _stages(result, "0")
    summary = [(s.reached, s.reached_after_previous, s.continued, s.median_s_to_next) for s in control.values()]
    assert summary == [
        (4, 4, 2, 45.0),  # v1 +60 s and v2 +30 s go on to evaluate; v3 evaluated before finding, v4 left
        (3, 2, 2, 130.0),  # v1 +140, v3 +120
        (2, 2, 1, 100.0),  # v1 buys 100 s after the cart
        (1, 1, 1, 700.0),  # and answers the survey 700 s later
        (1, 1, None, None),
    ]
    assert control["find"].drop_off.score == 0.5 and control["find"].drop_off.n == 4
    assert control["evaluate"].drop_off.score == pytest.approx(1 / 3)
    lo, hi = control["find"].drop_off.interval
    assert lo < 0.5 < hi
    assert control["engage"].drop_off is None
    assert control["find"].share.score == 1.0 and control["buy"].share.score == 0.25

    variant = _stages(result, "1")
    assert [(s.reached, s.reached_after_previous, s.continued, s.median_s_to_next) for s in variant.values()] == [
        (3, 3, 2, 255.0),  # v5 +10, v6 +500
        (2, 2, 2, 110.0),  # v5 +20, v6 +200
        (2, 2, 1, 60.0),  # v5 converts on "purchase" 60 s later; its "signup" conversion matches nothing
        (1, 1, 1, 100.0),
        (1, 1, None, None),
    ]
    assert variant["evaluate"].drop_off.score == 0.0

    empty = _stages(result, "2")
    assert all(s.reached == 0 and s.share.score == 0.0 for s in empty.values())
    assert empty["find"].drop_off.score is None and empty["find"].drop_off.n == 0
    assert _stages(result, HOLDOUT)["find"].reached == 1


def test_ux_cx_and_channels_of_a_stage(redis_url: str) -> None:
    result = _map(redis_url, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
    control = _stages(result, "0")
    decide = control["decide"]
    # At cart and checkout: v1's task succeeded (3 s), v3's failed (9 s), v2 abandoned.
    assert decide.ux.task_success.score == 0.5 and decide.ux.task_success.n == 2
    assert decide.ux.abandonment_rate.score == pytest.approx(1 / 3) and decide.ux.abandonment_rate.n == 3
    assert decide.ux.click_through_rate.score == pytest.approx(2 / 3)  # v1, v3 clicked; v2 did not
    assert decide.ux.median_task_ms == 6000.0
    assert (decide.ux.visitors, decide.ux.tasks, decide.ux.abandonments, decide.ux.clicks) == (3, 2, 1, 2)
    assert set(decide.ux_by_touchpoint) == {"cart", "checkout"}
    assert decide.ux_by_touchpoint["cart"].click_through_rate.score == 1.0
    assert decide.ux_by_touchpoint["checkout"].click_through_rate.score == 0.0
    assert {c: (ch.visitors, ch.events) for c, ch in decide.channels.items()} == {"ios": (1, 2), "web": (1, 2)}
    assert {c: (ch.visitors, ch.events) for c, ch in control["find"].channels.items()} == {
        "ios": (1, 1), "web": (3, 3),
    }
    assert control["engage"].cx.nps.score == 100.0 and control["engage"].cx.nps.n == 1
    assert control["decide"].cx.nps.n == 0 and control["decide"].cx.nps.score is None

    variant = _stages(result, "1")
    assert variant["decide"].cx.csat.score == 0.0 and variant["decide"].cx.csat.n == 1  # at checkout
    assert variant["buy"].cx.csat.n == 1  # checkout is a buy touchpoint too
    assert variant["evaluate"].channels["android"].events == 2
    assert variant["engage"].ux_by_touchpoint["account"].page_views == 1


def test_paths_across_channels(redis_url: str) -> None:
    result = _map(redis_url, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
    control = result.variants["0"]
    assert control.transitions[0].from_step == "web:home" and control.transitions[0].to_step == "web:product"
    assert control.transitions[0].visitors == 2  # v1 and v2
    assert {p.steps: p.visitors for p in control.paths} == {
        ("web:home", "web:product", "ios:cart"): 1,  # v1, across channels
        ("web:product", "ios:cart", "ios:checkout"): 1,  # the click and the task collapse
        ("ios:cart", "ios:checkout", "email:email"): 1,
        ("web:home", "web:product", "web:checkout"): 1,  # v2
        ("web:product", "web:home", "web:cart"): 1,  # v3
        ("web:home", "web:cart", "web:checkout"): 1,
        ("ios:home",): 1,  # v4's bounce
    }
    variant = result.variants["1"]
    assert ("web:home",) in {p.steps for p in variant.paths}  # v7: repeats collapsed
    assert ("email:email", "web:home", "web:product") in {p.steps for p in variant.paths}
    assert len(control.paths) <= 10 and len(control.transitions) <= 10


def test_without_an_experience_everyone_is_one_group(redis_url: str) -> None:
    result = _map(redis_url)  # default period: the last 30 days (the old visit of v4 is 10 days ago)
    assert list(result.variants) == [ALL_VISITORS]
    everyone = result.variants[ALL_VISITORS]
    assert everyone.label == "all visitors" and everyone.visitors == 11
    find = _stages(result, ALL_VISITORS)["find"]
    assert find.reached == 11 and find.channels["kiosk"].visitors == 1
    assert _stages(result, ALL_VISITORS)["evaluate"].reached == 6  # v1, v2, v3, v5, v6 and v4 10 days ago
    assert result.events_read == len(EVENTS) and result.exposures_read == 0
    assert result.until - result.since == pytest.approx(30 * 86_400.0)


def test_the_scan_is_capped_and_says_so(redis_url: str) -> None:
    capped, exact = _maps(
        redis_url,
        {"since_ts": SINCE, "until_ts": UNTIL, "max_events": 5},
        {"since_ts": SINCE, "until_ts": UNTIL, "max_events": len(EVENTS) - 1},
    )
    assert capped.truncated and capped.events_read == 5 and capped.max_events == 5
    assert _stages(capped, ALL_VISITORS)["find"].reached == 1  # v1's first five events only
    assert not exact.truncated and exact.events_read == len(EVENTS) - 1  # at the cap, nothing left unread


def test_the_period_bounds_what_is_read(redis_url: str) -> None:
    result = _map(redis_url, since_ts=_at(55), until_ts=_at(150))
    stages = _stages(result, ALL_VISITORS)
    assert stages["find"].reached == 0  # every find event is before 55 s
    assert stages["evaluate"].reached == 1  # v1 at 60 and 100 s; v6 is later, v2 and v3 earlier
    assert stages["decide"].reached == 1  # v3 at 120 s; v1 (200 s) and v5 (40 s) are outside
    assert stages["buy"].reached == 1  # v5's purchase conversion at 100 s
    with pytest.raises(ValueError, match="period is empty"):
        _map(redis_url, since_ts=UNTIL, until_ts=SINCE)


def test_ids_linked_to_one_person_are_one_visitor_from_their_first_event(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # v8 (exposed to variant 2, no events), u1 (a web home view, never exposed) and v9 (a kiosk search,
    # exposed to another experience) are one person: the person is on variant 2 and found the shop twice
    async def body() -> tuple[JourneyMap, JourneyMap, JourneyMap]:
        redis = Redis.from_url(redis_url)
        try:
            await _seed(redis)
            for visitor in ("v8", "u1", "v9"):
                await redis.hset(profile_key(visitor), PERSON_FIELD, "vp-one")
            split = await journey_map(redis, SHOPPING, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
            monkeypatch.setattr(journeys, "_RESOLVE_BATCH", 3)  # many batches: the same map
            small = await journey_map(redis, SHOPPING, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
            everyone = await journey_map(redis, SHOPPING, since_ts=SINCE, until_ts=UNTIL)
            return split, small, everyone
        finally:
            await redis.aclose()

    split, small, everyone = asyncio.run(body())
    assert [v.visitors for v in split.variants.values()] == [4, 3, 1, 1]
    assert split.unexposed_visitors == 1  # v11 only
    find = _stages(split, "2")["find"]
    assert find.reached == 1 and find.share.score == 1.0
    assert {c: (n.visitors, n.events) for c, n in find.channels.items()} == {"kiosk": (1, 1), "web": (1, 1)}
    assert [(p.steps, p.visitors) for p in split.variants["2"].paths] == [(("web:home", "kiosk:search"), 1)]
    assert msgspec.json.encode(small) == msgspec.json.encode(split)
    assert everyone.variants[ALL_VISITORS].visitors == 10  # 11 ids with events, two of them one person


def test_the_map_encodes_to_json(redis_url: str) -> None:
    result = _map(redis_url, experience=EXPERIENCE, since_ts=SINCE, until_ts=UNTIL)
    body = msgspec.json.decode(msgspec.json.encode(result))
    stage = body["variants"]["0"]["stages"][0]
    assert set(stage) == {
        "key", "name", "reached", "share", "reached_after_previous", "continued", "drop_off",
        "median_s_to_next", "channels", "ux", "ux_by_touchpoint", "cx",
    }
    assert stage["drop_off"] == {"score": 0.5, "interval": stage["drop_off"]["interval"], "n": 4}
    assert body["stages"][3]["event_types"] == ["purchase", "conversion:purchase"]


def test_the_journey_window_defaults_to_the_last_30_days_and_a_bare_until_date_includes_that_day() -> None:
    assert journey_window(None, None, now=1_000_000_000.0) == (1_000_000_000.0 - DEFAULT_PERIOD_S, 1_000_000_000.0)
    since, until = journey_window("2025-06-01", "2025-06-30", now=0.0)
    assert (since, until) == (1748736000.0, 1751328000.0)  # 2025-06-01T00:00Z … 2025-07-01T00:00Z
    assert journey_window(None, "2025-06-30T12:00:00+02:00", now=0.0)[1] == 1751277600.0
    with pytest.raises(InvalidPeriod, match="^since must be an ISO 8601"):
        journey_window("yesterday", None, now=0.0)
    with pytest.raises(InvalidPeriod, match="since must be before until"):
        journey_window("2025-07-01", "2025-06-30", now=0.0)

