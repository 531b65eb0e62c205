"""The survey state in the real Valkey (issue 24): 10,000 simulated people finish a checkout on the
web, a 30 % sample is asked for the CSAT and shown it; then they open the app, where another survey
is due — for exactly those not shown one (the cap holds across surveys and channels) — and once the
30 days have passed, for everyone. The state is written by the event recorder, in the call that counts
the event: retried events count once; erasing the person erases the state."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

from msgspec import json
from redis.asyncio import Redis

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import async_redis
from api.settings import Settings
from personalization.decision.surveys import (
    DAY_S,
    due_survey,
    in_sample,
    parse_state,
    watched_triggers,
)
from personalization.measurement.events import EVENT_DECODER
from personalization.measurement.recorder import EventRecorder, EventsRecorded
from personalization.store.erasure import erase_visitor
from personalization.store.keys import survey_state_key
from personalization.store.surveys import load_state, read_state
from personalization.types import SurveyDefinition, SurveyText, SurveyTrigger

T = 1_767_000_000.0
TEXT = {"en-US": SurveyText(question="?")}
CSAT = SurveyDefinition(id="e1", key="checkout-csat", name="CSAT", metric="csat",
                        trigger=SurveyTrigger(kind="task_success", detail="checkout"), texts=TEXT, sampling_rate=0.3)
APP_NPS = SurveyDefinition(id="e2", key="app-nps", name="NPS", metric="nps",
                           trigger=SurveyTrigger(kind="page", detail="home"), texts=TEXT)
SURVEYS = [CSAT, APP_NPS]
PEOPLE = [f"sim-{i}" for i in range(10_000)]


def run(body: Callable[[Redis], Awaitable[None]], redis_url: str) -> None:
    async def main() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await body(redis)
        finally:
            await redis.aclose()

    asyncio.run(main())


async def due_for_all(redis: Redis, now: float, page: str | None) -> dict[str, str | None]:
    due: dict[str, str | None] = {}
    for start in range(0, len(PEOPLE), 500):
        chunk = PEOPLE[start:start + 500]
        async with redis.pipeline(transaction=False) as pipe:  # one round trip per 500 people
            for person in chunk:
                pipe.hgetall(survey_state_key(person))
            raw = await pipe.execute()
        states = [parse_state({k.decode(): v.decode() for k, v in fields.items()}) for fields in raw]
        for person, state in zip(chunk, states, strict=True):
            found = due_survey(SURVEYS, person_id=person, state=state, now=now, page=page)
            due[person] = found.survey.key if found is not None else None
    return due


def recorder(redis: Redis) -> EventRecorder:
    return EventRecorder(redis, watched=lambda: watched_triggers(SURVEYS))


async def send(redis: Redis, events: list[dict[str, object]]) -> EventsRecorded:
    """Record ``events`` as ``POST /v1/events`` does (the route hands the batch to ``accept``)."""
    accepted = duplicates = 0
    for start in range(0, len(events), 500):
        taken = await recorder(redis).accept(list(events[start:start + 500]))
        accepted, duplicates = accepted + taken.recorded.accepted, duplicates + taken.recorded.duplicates
    return EventsRecorded(accepted=accepted, duplicates=duplicates)


def test_sampling_and_the_cross_channel_cap_over_10000_people(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        await send(redis, [{"type": "task", "visitor_id": p, "name": "checkout", "success": True, "ts": T,
                            "channel": "web"} for p in PEOPLE])
        web = await due_for_all(redis, T + 60, page="/checkout/done")
        asked = [p for p, key in web.items() if key == "checkout-csat"]
        assert set(web.values()) == {"checkout-csat", None}
        expected, sd = 0.3 * len(PEOPLE), math.sqrt(len(PEOPLE) * 0.3 * 0.7)
        assert abs(len(asked) - expected) < 4 * sd, len(asked)
        assert asked == [p for p in PEOPLE if in_sample(p, "checkout-csat", 0.3)]  # the hash decides

        await send(redis, [{"type": "survey_shown", "visitor_id": p, "survey": "checkout-csat", "metric": "csat",
                            "channel": "web", "ts": T + 61} for p in asked])
        app = await due_for_all(redis, T + 3600, page="home")
        shown = set(asked)
        assert all(app[p] is None for p in shown)  # capped: shown a survey on the web an hour ago
        assert all(app[p] == "app-nps" for p in PEOPLE if p not in shown)
        month_later = await due_for_all(redis, T + 61 + 30 * DAY_S + 1, page="home")
        assert all(key == "app-nps" for key in month_later.values())  # the cap has passed for everyone

    run(body, redis_url)


def test_a_retried_showing_counts_once_and_only_watched_consented_events_are_kept(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        shown = {"type": "survey_shown", "visitor_id": "st-1", "survey": "app-nps", "metric": "nps", "ts": T,
                 "event_id": "e-1"}
        assert await send(redis, [shown, shown]) == EventsRecorded(accepted=1, duplicates=1)
        assert await send(redis, [shown]) == EventsRecorded(duplicates=1)
        assert await send(redis, [dict(shown, event_id="e-resent")]) == EventsRecorded(accepted=1)  # same ts
        await send(redis, [
            {"type": "task", "visitor_id": "st-1", "name": "search", "success": True, "ts": T},  # not watched
            {"type": "task", "visitor_id": "st-1", "name": "checkout", "success": False, "ts": T},  # not watched
            {"type": "task", "visitor_id": "st-1", "name": "checkout", "success": True, "ts": T + 5,
             "analytics": False},  # no consent: stored nowhere
            {"type": "survey_shown", "visitor_id": "st-1"},  # does not decode: skipped
            {"type": "page_view", "visitor_id": "st-1"},
        ])
        assert await read_state(redis, "st-1") == {"last": repr(T), "s:app-nps": repr(T), "n:app-nps": "1"}
        ttl = await redis.ttl(survey_state_key("st-1"))
        assert ttl > 300 * 86_400  # lives as long as the profile
        later = dict(shown, ts=T + 10, event_id="e-2")
        await send(redis, [later])
        state = await load_state(redis, "st-1")
        assert state.shown == {"app-nps": 2} and state.last_shown == T + 10

    run(body, redis_url)


def test_erasing_the_person_erases_their_survey_state(redis_url: str) -> None:
    async def body(redis: Redis) -> None:
        await send(redis, [{"type": "task", "visitor_id": "st-gone", "name": "checkout", "success": True, "ts": T}])
        assert await read_state(redis, "st-gone") == {"t:task_success:checkout": repr(T)}
        await erase_visitor(redis, "st-gone")
        assert await redis.exists(survey_state_key("st-gone")) == 0

    run(body, redis_url)


def test_the_state_is_written_on_a_redis_cluster_too(valkey_cluster: EmbeddedCluster) -> None:
    async def main() -> None:
        redis = async_redis(Settings(redis_url=valkey_cluster.url))
        try:
            people = [f"cl-{i}" for i in range(20)]  # spread over the cluster's slots
            events = [{"type": "survey_shown", "visitor_id": p, "survey": "app-nps", "metric": "nps", "ts": T}
                      for p in people]
            assert await EventRecorder(redis).record([EVENT_DECODER.decode(json.encode(e)) for e in events]) == 20
            states = [await load_state(redis, p) for p in people]
            assert all(s.last_shown == T and s.shown == {"app-nps": 1} for s in states)
        finally:
            await redis.aclose()

    asyncio.run(main())
