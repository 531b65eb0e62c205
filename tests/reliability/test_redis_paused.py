"""Redis paused or slow under load: Vary keeps answering within its budget, loses and doubles nothing.

Personalize requests over 32 concurrent keep-alive connections on loopback to the real ``vary serve``
process; after a warm-up the Valkey server is

* **paused** with SIGSTOP for :data:`PAUSE_S` seconds, then SIGCONT: the kernel still accepts TCP
  connections and buffers commands, but nothing answers — the fault a socket timeout exists for;
* **slowed down** for :data:`SLOW_S` seconds by back-to-back ``CLIENT PAUSE`` of :data:`BUSY_MS` ms
  (see :class:`_Slow`): Redis answers, late, as one stuck behind heavy scripts would.

Meanwhile event batches are posted. Checked: no 5xx and no dropped connection; decisions made while
Redis was paused are 200 and ``degraded``; the p50 *and p99* latency of requests started during the
fault stay within :func:`_budget`; afterwards the exposures in Redis are exactly the decisions the
clients received (by exposure id) and every event is stored exactly once — the ones spooled during
the pause replayed.

The load is driven by :mod:`tests.reliability.http1`, not httpx: httpx's own per-request cost
saturated a core at ~350 requests/s and queued requests inside the client for seconds, which is what
this test used to report as a 2 s p99 (see that module).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis

from api.http.ratelimit import REDIS_DEADLINE_S
from personalization.measurement.events import EVENT_STREAM
from personalization.measurement.recorder import SERVER_EVENT_ID_PREFIX
from personalization.store.keys import profile_key
from tests.reliability.http1 import ConnectionDropped
from tests.reliability.load import (
    DELIVERY_HEADERS,
    PROFILE_TIMEOUT_S,
    Answer,
    Load,
    global_exposures,
    per_entry,
    percentile,
    stored_exposures,
    valkey_and_vary,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CONCURRENCY = 32
WARM = 1_500  # answers before the fault (the last second of them is the latency baseline)
PAUSE_S = 5.0  # longer than the client's 2 s socket timeout: exposure batches time out and spool
SLOW_S = 4.0
BUSY_MS = 150
AFTER_S = 2.0  # load goes on this long after the fault ends
RATE_LIMIT_PER_S = 1_000_000  # per key: above anything this load reaches (see _scenario)
EVENT_EVERY_S = 0.25


def _budget(baseline_p99: float) -> float:
    """What a request may take while Redis does not answer: the rate limiter's Redis deadline and the
    profile timeout (both spent in turn, each on a Redis that does not answer), on top of what the
    same request costs with Redis healthy under the same load (the measured p99 just before the
    fault: queueing behind 31 other connections on a shared 2-core machine), plus 50 ms for the
    scheduling noise of other processes on that machine."""
    return REDIS_DEADLINE_S + PROFILE_TIMEOUT_S + baseline_p99 + 0.05


class _Fault:
    """Starts and ends one fault on the Valkey server; subclasses say which."""

    def __init__(self, port: int) -> None:
        self.port = port

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class _Paused(_Fault):
    def begin(self) -> None:
        with redis.Redis(port=self.port) as client:
            self.pid = int(client.info("server")["process_id"])
        os.kill(self.pid, signal.SIGSTOP)

    def end(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


class _Slow(_Fault):
    """Redis answering late: ``CLIENT PAUSE <BUSY_MS> ALL`` back to back, with about a millisecond
    between pauses in which the queued commands run. To every client this is a server that takes up
    to :data:`BUSY_MS` ms per command, as one stuck behind a heavy script or ``KEYS *`` would be.

    Not a busy Lua script: on this 2-core machine a script spinning for seconds takes a whole core
    from Vary and the load generator, a contention a production Redis on its own host does not
    cause, and the test then measured the shared CPU rather than Vary's handling of a slow Redis.
    (An earlier version also looped on ``TIME``, which Valkey freezes inside a script: every script
    spun to the 5 s busy limit and Valkey answered ``BUSY`` to everyone.)"""

    def begin(self) -> None:
        self.stop = threading.Event()
        self.pauses = 0
        self.paused_s = 0.0
        started = time.monotonic()
        self.started = started

        def stall() -> None:
            with redis.Redis(port=self.port, socket_timeout=5) as client:
                while not self.stop.is_set():
                    client.execute_command("CLIENT", "PAUSE", BUSY_MS, "ALL")
                    self.pauses += 1
                    time.sleep(BUSY_MS / 1000 + 0.001)  # the pause ends; ~1 ms for the queue to drain

        self.thread = threading.Thread(target=stall, daemon=True)
        self.thread.start()

    def end(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()
        self.paused_s = self.pauses * BUSY_MS / 1000


def _scenario(tmp_path: Path, make_fault: Callable[[int], _Fault], fault_s: float) -> dict[str, object]:
    """Warm up, run the fault for ``fault_s`` while personalize load and event batches go on, keep
    the load ``AFTER_S`` longer; check everything; return the figures for the report."""
    # The limiter stays on with a limit out of this load's reach: while Redis is paused decisions skip
    # the profile read and get faster, and once Redis is back a load above the default 5,000/s per key
    # is refused with 429, as documented (api/http/ratelimit.py, tested in test_rate_limit_outage.py).
    # This test is about Redis pausing, not about that limit; a fast machine tripped it (262 of 16,666).
    with valkey_and_vary(tmp_path, VARY_RATE_LIMIT_DELIVERY_PER_S=str(RATE_LIMIT_PER_S)) as (valkey, vary):
        load = Load(vary.base, CONCURRENCY)
        fault = make_fault(valkey.port)
        warm, stop = asyncio.Event(), asyncio.Event()
        window: dict[str, float] = {}
        events_sent: list[list[dict[str, object]]] = []
        event_answers: list[httpx.Response] = []

        def on_answer(answer: Answer, answered: int) -> None:
            if answered == WARM:
                warm.set()
            if "end" in window and answer.started > window["end"] + AFTER_S:
                stop.set()

        async def post_events(client: httpx.AsyncClient) -> None:
            """A batch every EVENT_EVERY_S while the fault lasts, each on its own (no batch waits for
            another): a page view with a client id, a conversion with one, a page view without."""
            tasks = []
            k = 0
            while time.monotonic() < window["start"] + fault_s - 0.5:
                batch = [
                    {"type": "page_view", "visitor_id": f"ev-{k}", "session_id": f"s-{k}", "event_id": f"pv-{k}"},
                    {"type": "conversion", "visitor_id": f"ev-{k}", "goal": "signup", "event_id": f"cv-{k}"},
                    {"type": "page_view", "visitor_id": f"ev-{k}", "session_id": f"s-{k}"},
                ]
                events_sent.append(batch)
                tasks.append(asyncio.create_task(client.post("/v1/events", json={"events": batch})))
                k += 1
                await asyncio.sleep(EVENT_EVERY_S)
            event_answers.extend(await asyncio.gather(*tasks))

        async def chaos() -> None:
            await warm.wait()
            window["start"] = time.monotonic()
            # Off the load's event loop: ending the slow fault joins its thread, which may be asleep
            # for up to BUSY_MS; run here, that blocked the load generator and added its wait to every
            # request in flight (a CI run measured p99 323 ms against a 184 ms budget; the server's own
            # loop lag stayed under 11 ms).
            await asyncio.to_thread(fault.begin)
            async with httpx.AsyncClient(base_url=vary.base, headers=DELIVERY_HEADERS, timeout=10) as client:
                await asyncio.gather(asyncio.sleep(fault_s), post_events(client))
            await asyncio.to_thread(fault.end)
            window["end"] = time.monotonic()

        started = time.monotonic()
        try:
            asyncio.run(load.run(stop=stop, on_answer=on_answer, alongside=(chaos(),)))
        except ConnectionDropped as exc:  # the server dropped a connection: show what it said
            raise AssertionError(f"{exc!r} after {len(load.answers)} answers; server output:\n{vary.output()}") from exc
        elapsed = time.monotonic() - started

        # 1. No 5xx (nor anything else): every request answered 200.
        assert load.statuses == {200: len(load.answers)}, (load.statuses, vary.output())
        before = [a for a in load.answers if window["start"] - 1.0 <= a.started < window["start"]]
        during = [a for a in load.answers if window["start"] <= a.started < window["end"]]
        baseline_p99 = percentile([a.latency_s for a in before], 0.99)
        latencies = [a.latency_s for a in during]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        degraded = sum(a.degraded for a in during)
        # 2. Within the budget while the fault lasts: the median and the tail.
        print(f"\nfault: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, healthy p99 {baseline_p99 * 1000:.0f} ms")
        # If it fails: the slowest requests (started s after the fault began, latency, degraded) and the
        # server's own event-loop lag tell a stalled server from a stalled load generator.
        slowest = sorted(((round(a.started - window["start"], 3), round(a.latency_s, 3), a.degraded) for a in during),
                         key=lambda s: -s[1])[:10]
        within = p50 <= _budget(baseline_p99) and p99 <= _budget(baseline_p99)
        if not within:  # printed whole: pytest cuts a long assertion message
            print(f"slowest {slowest}\nserver loop lag {httpx.get(f'{vary.base}/ready', timeout=5).json()['loop_lag']}")
        assert within, (p50, p99, baseline_p99, len(during), degraded)
        assert load.connects == CONCURRENCY  # keep-alive held: no connection was dropped and reopened

        # 3. Exposures in Redis = the decisions the clients received (the spool replayed), none twice.
        answers = load.exposures()
        logged = stored_exposures(valkey.port, len(answers))
        stored = per_entry(logged)
        # The global holdout's own exposure: one per request answered, none lost either.
        assert global_exposures(logged) == len(load.answers), (global_exposures(logged), len(load.answers))
        assert len(stored) == len(set(stored)), "an exposure was written twice"
        missing = set(answers) - set(stored)
        if missing or set(stored) != set(answers):  # say which requests, when, and what the server said
            fault_start = window["start"]
            by_index = {a.index: a for a in load.answers}
            when = sorted({round(by_index[answers[m]].started - fault_start, 2) for m in missing})[:20]
            print(f"\n{len(missing)} exposures missing; their requests started at (s from the fault) {when}")
            print(vary.output())
        assert set(stored) == set(answers), (len(stored), len(answers))

        # 4. Every event stored exactly once: spooled ones replayed, none counted twice.
        assert [r.status_code for r in event_answers] == [202] * len(events_sent), [r.text for r in event_answers]
        spooled = sum(r.json()["spooled"] for r in event_answers)
        accepted = sum(r.json()["accepted"] for r in event_answers)
        assert spooled + accepted == 3 * len(events_sent)
        store = redis.Redis(port=valkey.port, decode_responses=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and store.xlen(EVENT_STREAM) < 3 * len(events_sent):
            time.sleep(0.25)
        time.sleep(1.5)  # one more replay round: nothing may be added twice
        stored_events = [fields["data"] for _, fields in store.xrange(EVENT_STREAM)]
        assert len(stored_events) == 3 * len(events_sent), (len(stored_events), len(events_sent))
        for k in range(len(events_sent)):
            assert sum(f'"pv-{k}"' in e for e in stored_events) == 1 and sum(f'"cv-{k}"' in e for e in stored_events) == 1
            assert sum(f'"ev-{k}"' in e and SERVER_EVENT_ID_PREFIX in e for e in stored_events) == 1
            profile = store.hgetall(profile_key(f"ev-{k}"))
            assert profile["page_views"] == "2" and profile["conversions"] == "1", (k, profile)
        store.close()
        ready = httpx.get(f"{vary.base}/ready", timeout=5).json()
        assert ready["events_spooled"] == spooled and ready["events_replayed"] == spooled
        assert ready["events_spool_depth"] == 0 and ready["events_spool_bytes"] == 0
        # The breaker closed again, every degraded answer was counted, the journal holds nothing unwritten.
        assert ready["profile_breaker_open"] is False and ready["decisions_degraded"] >= degraded
        assert ready["journal_bytes"] == 0, ready
        figures = {
            "requests": len(load.answers),
            "elapsed_s": round(elapsed, 1),
            "fault_s": round(window["end"] - window["start"], 2),
            "during": len(during),
            "degraded_during": degraded,
            "baseline_p99_ms": round(baseline_p99 * 1000, 1),
            "p50_ms": round(p50 * 1000, 1),
            "p99_ms": round(p99 * 1000, 1),
            "budget_ms": round(_budget(baseline_p99) * 1000, 1),
            "exposures_reconciled": len(stored),
            "exposures_spooled": ready["exposures_spooled"],
            "events_posted": 3 * len(events_sent),
            "events_spooled": spooled,
            "events_replayed": ready["events_replayed"],
        }
        print(f"\n{figures}")
        return {**figures, "_during": during, "_window": window}


def test_paused_redis_degrades_within_budget_and_loses_nothing(tmp_path: Path) -> None:
    result = _scenario(tmp_path, _Paused, PAUSE_S)
    during: list[Answer] = result["_during"]  # type: ignore[assignment]
    window: dict[str, float] = result["_window"]  # type: ignore[assignment]
    # A request that began once SIGSTOP had landed and ended before SIGCONT got no profile: degraded.
    paused = [a for a in during if a.started >= window["start"] + 0.05 and a.started + a.latency_s < window["end"]]
    assert paused and all(a.degraded for a in paused), sum(not a.degraded for a in paused)
    assert result["events_spooled"] > 0  # the pause outlasted the socket timeout: events went to the spool


def test_slow_redis_degrades_within_budget_and_loses_nothing(tmp_path: Path) -> None:
    faults: list[_Slow] = []

    def slow(port: int) -> _Slow:
        faults.append(_Slow(port))
        return faults[0]

    result = _scenario(tmp_path, slow, SLOW_S)
    fault = faults[0]
    print(f"pauses: {fault.pauses} of {BUSY_MS} ms, {fault.paused_s:.1f} s of {SLOW_S:.0f} s")
    assert fault.paused_s >= 0.8 * SLOW_S  # Redis really was stalled most of the time
    assert result["degraded_during"] > 0  # profile reads slower than the timeout were not waited for
