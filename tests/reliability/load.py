"""Shared parts of the Redis fault tests: a real Valkey + ``vary serve`` pair, a personalize load
driver on loopback, and the reconciliation of exposures in Redis against what the clients received.

Used by ``test_redis_outage.py`` (Redis killed and restarted) and ``test_redis_paused.py`` (Redis
paused with SIGSTOP, or slowed down) so both drive and check the service the same way.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis

from api.embedded.valkey import EmbeddedRedis
from personalization.decision.global_holdout import GLOBAL_EXPERIENCE
from personalization.store.keys import EXPOSURES
from personalization.store.partitions import all_streams
from personalization.types import EXPOSURE_DECODER, Exposure
from tests.e2e.servers import VaryProcess, free_port
from tests.reliability.http1 import KeepAliveConnection

DELIVERY_KEY = "rel-delivery"
DELIVERY_HEADERS = {"Authorization": f"Bearer {DELIVERY_KEY}"}
PROFILE_TIMEOUT_S = 0.05


@contextmanager
def valkey_and_vary(tmp_path: Path, **env: str) -> Iterator[tuple[EmbeddedRedis, VaryProcess]]:
    """A Valkey on its own port (so a test can kill, pause or restart it) and ``vary serve`` using it,
    both stopped afterwards. ``env`` adds or overrides ``VARY_*`` settings."""
    valkey = EmbeddedRedis(tmp_path / "valkey", port=free_port())
    valkey.start()
    vary = VaryProcess(
        {
            "VARY_REDIS_URL": f"redis://127.0.0.1:{valkey.port}",
            "VARY_DELIVERY_KEYS": DELIVERY_KEY,
            "VARY_ADMIN_KEYS": "rel-admin",
            "VARY_AGGREGATE": "false",
            "VARY_CONTENT_POLL_S": "0",
            "VARY_PROFILE_TIMEOUT_S": str(PROFILE_TIMEOUT_S),
            # One worker: /ready's spool counters are per worker, and the checks read them.
            "VARY_WORKERS": "1",
            # No access log: these tests time Vary from a load generator in this process, and a line
            # per request drained through a pipe by a thread here competes with it for the GIL.
            "VARY_ACCESS_LOG": "false",
            **env,
        },
        tmp_path / "vary",
    )
    try:
        vary.wait_ready()
        yield valkey, vary
    finally:
        vary.stop()
        valkey.stop()


def personalize_body(i: int) -> dict[str, object]:
    return {"visitor": {"id": f"rel-{i % 5000}", "country": "US"}, "entries": ["heroHome", "bannerShipping", "bannerNewsletter"]}


@dataclass
class Answer:
    """One personalize request as the client saw it (times from ``time.monotonic``)."""

    index: int
    status: int
    started: float
    latency_s: float
    degraded: bool = False
    exposure_ids: list[str] = field(default_factory=list)


@dataclass
class Load:
    """Personalize requests over ``concurrency`` keep-alive connections until ``total`` were answered
    or ``stop`` is set; ``on_answer(answer, answered)`` runs after each (to time faults). Each worker
    owns one :class:`~tests.reliability.http1.KeepAliveConnection` (see there why not httpx)."""

    base: str
    concurrency: int = 32
    answers: list[Answer] = field(default_factory=list)
    #: TCP connections the workers opened (``concurrency`` when keep-alive held throughout).
    connects: int = 0

    @property
    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for answer in self.answers:
            counts[answer.status] = counts.get(answer.status, 0) + 1
        return counts

    def exposures(self) -> dict[str, int]:
        """Exposure id → request index, for every decision a client received."""
        return {exposure: a.index for a in self.answers for exposure in a.exposure_ids}

    async def run(
        self,
        total: int | None = None,
        stop: asyncio.Event | None = None,
        on_answer: Callable[[Answer, int], None] | None = None,
        alongside: tuple[Awaitable[None], ...] = (),
    ) -> None:
        indexes = itertools.count()

        async def worker() -> None:
            connection = KeepAliveConnection.to(self.base, DELIVERY_HEADERS)
            try:
                while stop is None or not stop.is_set():
                    i = next(indexes)
                    if total is not None and i >= total:
                        return
                    body = msgspec.json.encode(personalize_body(i))
                    started = time.monotonic()
                    reply = await connection.post("/v1/personalize", body)
                    answer = Answer(i, reply.status, started, time.monotonic() - started)
                    if reply.status == 200:
                        data = msgspec.json.decode(reply.body)
                        answer.degraded = data["degraded"]
                        answer.exposure_ids = [entry["exposure_id"] for entry in data["entries"]]
                    self.answers.append(answer)
                    if on_answer is not None:
                        on_answer(answer, len(self.answers))
            finally:
                self.connects += connection.connects
                connection.close()

        # The load generator must not stall: it times every request, so a pause of its own counts as
        # latency of each request in flight. Late in a full ``make test`` this pytest process tracks
        # ~625,000 objects, and a gen2 collection of them took 0.45-0.68 s (gc callbacks, measured
        # during these tests); a CI run once failed test_redis_paused with p99 507 ms against a 182 ms
        # budget, every slow request started within the same 3 ms. Frozen, the heap gathered so far
        # is left out of the collections made while the load runs (the collector stays on).
        gc.collect()
        gc.freeze()
        try:
            await asyncio.gather(*alongside, *(worker() for _ in range(self.concurrency)))
        finally:
            gc.unfreeze()


def stored_exposures(port: int, expected: int, timeout_s: float = 60.0, partitions: int = 1) -> list[Exposure]:
    """The exposures in Redis (every partition), waiting until at least ``expected`` per-entry ones (not
    the global holdout's own, see :func:`per_entry`) arrived (the spool replays about once a second)
    or the time is up."""
    store = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            stored = [
                EXPOSURE_DECODER.decode(fields[b"data"])
                for stream in all_streams(EXPOSURES, partitions)
                for _, fields in store.xrange(stream)
            ]
            if len(per_entry(stored)) >= expected or time.monotonic() > deadline:
                return stored
            time.sleep(0.5)
    finally:
        store.close()


def per_entry(exposures: list[Exposure]) -> list[str]:
    """The ids of the exposures of requested entries — the ones a client is told of. The demo space has
    a global holdout, so every personalize request also logs one ``_global`` exposure (no entry's id)."""
    return [x.id for x in exposures if x.experience != GLOBAL_EXPERIENCE]


def global_exposures(exposures: list[Exposure]) -> int:
    """How many of ``exposures`` are the global holdout's own (one per personalize request)."""
    return sum(1 for x in exposures if x.experience == GLOBAL_EXPERIENCE)


def stored_exposure_ids(port: int, expected: int, timeout_s: float = 60.0, partitions: int = 1) -> list[str]:
    """The ids of the per-entry exposures in Redis (:func:`stored_exposures`, :func:`per_entry`)."""
    return per_entry(stored_exposures(port, expected, timeout_s, partitions))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0–1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def writer_story(log: list[str], loggers: tuple[str, ...] = ("vary.exposures", "vary.spool")) -> str:
    """What the exposure writer and the spools logged, for a failure message: each message once (numbers
    and addresses folded), with how often and from which pids, in the order first seen. A CI run that
    lost one batch printed only the tail of the log, which did not say how the batch had travelled."""
    seen: Counter[str] = Counter()
    pids: dict[str, set[int]] = {}
    for line in log:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("logger") not in loggers:
            continue
        message = re.sub(r"\d+", "N", str(record.get("msg", "")))
        seen[message] += 1
        pids.setdefault(message, set()).add(int(record.get("pid", 0)))
    return "\n".join(f"{count:6d}x {message} (pids {sorted(pids[message])})" for message, count in seen.items())


def missing_story(load: Load, missing: set[str], marks: dict[str, float]) -> str:
    """When the requests whose exposures are missing were answered, in seconds from the fault's first
    mark (``marks``: name -> ``time.monotonic()``), and how long each took."""
    answers = load.exposures()
    by_index = {answer.index: answer for answer in load.answers}
    indexes = sorted({answers[exposure] for exposure in missing if exposure in answers})
    origin = min(marks.values(), default=0.0)
    times = [(i, round(by_index[i].started - origin, 3), round(by_index[i].latency_s, 3)) for i in indexes]
    shown = ", ".join(f"#{i} at {t:+.3f}s ({latency}s)" for i, t, latency in times[:12])
    faults = ", ".join(f"{name} {t - origin:+.3f}s" for name, t in marks.items())
    return f"{len(indexes)} requests missing exposures: {shown}{' ...' if len(times) > 12 else ''}; faults: {faults}"
