"""A survey shown while Redis is down still caps the person once Redis is back (issue 24).

The cap state (``vary:vh:{<tag>}:sv``) is written by the event recorder in the same Lua call that
counts the event behind its ``event_id`` marker, so the spool's replay writes it too, exactly once.
Against the real Valkey: the outage is a SIGKILLed server started again on the same port and data;
"due" is asked through the function ``POST /v1/surveys/due`` calls (:func:`survey_due_alone`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from redis.asyncio import Redis

from api.embedded.valkey import EmbeddedRedis
from personalization.decision.surveys import watched_triggers
from personalization.measurement.recorder import EventRecorder, EventsRecorded
from personalization.store.profiles import RedisProfileStore
from personalization.store.spool import Spool
from personalization.store.surveys import read_state
from personalization.surveys import survey_due_alone
from personalization.types import SurveyDefinition, SurveyText, SurveyTrigger, Visitor
from tests.e2e.servers import free_port

CSAT = SurveyDefinition(id="e1", key="checkout-csat", name="CSAT", metric="csat",
                        trigger=SurveyTrigger(kind="task_success", detail="checkout"),
                        texts={"en-US": SurveyText(question="How was checkout?")})
SURVEYS = {CSAT.key: CSAT}


def _checkout(person: str, ts: float, event_id: str) -> dict[str, object]:
    return {"type": "task", "visitor_id": person, "name": "checkout", "success": True, "ts": ts,
            "event_id": event_id, "channel": "web"}


def _shown(person: str, ts: float, event_id: str) -> dict[str, object]:
    return {"type": "survey_shown", "visitor_id": person, "survey": CSAT.key, "metric": "csat", "ts": ts,
            "event_id": event_id, "channel": "web"}


def test_a_showing_spooled_during_an_outage_caps_the_person_once_replayed(tmp_path: Path) -> None:
    port = free_port()
    server = EmbeddedRedis(tmp_path / "valkey", port=port)
    server.start()

    async def body() -> None:
        client = Redis(port=port, socket_timeout=1.0, socket_connect_timeout=1.0)
        spool = Spool(tmp_path / "spool" / "events.spool", kind="events")
        recorder = EventRecorder(client, spool=spool, watched=lambda: watched_triggers(SURVEYS.values()))
        profiles = RedisProfileStore(client)

        async def due(person: str) -> str | None:
            found = await survey_due_alone(client, profiles, SURVEYS, Visitor(id=person), now=time.time())
            return found.survey.key if found is not None else None

        t0 = time.time()
        # Before the outage: "capped" finished a checkout (recorded live), so the CSAT is due.
        taken = await recorder.accept([_checkout("capped", t0, "c-1")])
        assert taken.recorded == EventsRecorded(accepted=1)
        assert await due("capped") == CSAT.key

        server.kill()
        # During it: the web kit shows "capped" the survey and posts survey_shown; "fresh" finishes a
        # checkout. Both are spooled, and no survey is asked (the cap cannot be read).
        taken = await recorder.accept([_shown("capped", t0 + 1, "s-1"), _checkout("fresh", t0 + 2, "c-2")])
        assert taken.recorded == EventsRecorded(spooled=2)
        assert await due("capped") is None and await due("fresh") is None
        spooled = list(spool.batches())

        server.start()
        await client.ping()
        assert await recorder.replay() == 2 and spool.size == 0
        state = await read_state(client, "capped")
        assert state["n:checkout-csat"] == "1" and float(state["last"]) == t0 + 1
        assert float(state["s:checkout-csat"]) == t0 + 1
        assert await due("capped") is None  # shown during the outage: capped now
        # The trigger state rides the replay too: the checkout during the outage asks "fresh".
        assert float((await read_state(client, "fresh"))["t:task_success:checkout"]) == t0 + 2
        assert await due("fresh") == CSAT.key

        # The same batch replayed again (a replay whose reply was lost, a crash before truncating):
        # the event markers stop it, the showing is still counted once.
        for batch in spooled:
            spool.append(batch.batch_id, [bytes(raw) for raw in batch.entries])
        assert await recorder.replay() == 2
        assert (await read_state(client, "capped"))["n:checkout-csat"] == "1"
        assert await due("capped") is None
        # A later showing, a new event, still counts: the marker is per event, not per survey.
        assert (await recorder.accept([_shown("capped", t0 + 5, "s-2")])).recorded == EventsRecorded(accepted=1)
        assert (await read_state(client, "capped"))["n:checkout-csat"] == "2"
        recorder.close()
        await client.aclose()

    try:
        asyncio.run(body())
    finally:
        server.stop()
