"""End to end on a Redis Cluster: two API processes, two aggregators (one SIGKILLed), exact counts.

A 3-node Valkey cluster on loopback (``api/embedded/cluster.py``), two ``vary serve`` processes with
``VARY_REDIS_URL=redis+cluster://…``, ``VARY_AGGREGATE=false`` and 4 stream partitions, and two
``vary aggregate`` processes in one consumer group. Seeded visitors are personalized through both API
processes (alternating), a third of them convert, and some conversions are retried with the same
``event_id`` through the *other* API process. Halfway through, one aggregator is SIGKILLed: the
entries it had read but not acknowledged must be claimed by the survivor (``XAUTOCLAIM``) and counted
exactly once.

Then the results API must agree with what the clients were told: per experience and variant, the
exposures served, the unique visitors, the holdout visitors and the unique converters; the event
endpoint's accepted / duplicate counts must match the events sent; and both API processes must
answer the same variant for the same visitor.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.embedded.cluster import EmbeddedCluster
from api.redis_client import sync_redis
from api.settings import Settings
from personalization.decision.global_holdout import GLOBAL_EXPERIENCE
from personalization.store.keys import EVENTS, EXPOSURES
from personalization.store.partitions import all_streams
from tests.e2e.servers import VaryProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DELIVERY = "e2e-cluster-delivery"
ADMIN = "e2e-cluster-admin"
PARTITIONS = 4
VISITORS = 1500
GROUP = "vary-aggregate"
ENTRIES = ["bannerShipping", "heroHome"]
GOAL = "signup"


@dataclass
class Ledger:
    """What the clients were told: every exposure served, every conversion sent and its answer."""

    #: (experience, variant or "h" for holdout) → exposure ids served
    exposures: dict[tuple[str, int | str], set[str]] = field(default_factory=lambda: defaultdict(set))
    #: (experience, variant or "h") → visitors served it
    visitors: dict[tuple[str, int | str], set[str]] = field(default_factory=lambda: defaultdict(set))
    #: every exposure id served (entries without an experience are exposures too: content reach)
    served: set[str] = field(default_factory=set)
    converters: set[str] = field(default_factory=set)
    #: personalize answers recorded: each logs one global-holdout exposure (the demo space has one)
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    retried: int = 0
    compared: int = 0
    mismatches: list[tuple[str, Any, Any]] = field(default_factory=list)

    def record(self, visitor: str, body: dict[str, Any]) -> dict[str, tuple[str | None, int, bool]]:
        decided = {}
        self.requests += 1
        for entry in body["entries"]:
            decided[entry["entry_id"]] = (entry["experience"], entry["variant"], entry["holdout"])
            self.served.add(entry["exposure_id"])
            if entry["experience"] is None:
                continue
            arm: int | str = "h" if entry["holdout"] else entry["variant"]
            self.exposures[(entry["experience"], arm)].add(entry["exposure_id"])
            self.visitors[(entry["experience"], arm)].add(visitor)
        return decided


def _env(cluster_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "VARY_REDIS_URL": cluster_url,
        "VARY_STREAM_PARTITIONS": str(PARTITIONS),
        "VARY_AGGREGATE": "false",
        "VARY_DELIVERY_KEYS": DELIVERY,
        "VARY_ADMIN_KEYS": ADMIN,
        "VARY_DATA_DIR": str(data_dir),
        "VARY_CONTENT_POLL_S": "0",
        # A dead consumer's entries are claimed after 2 s idle, checked every second.
        "VARY_AGGREGATE_CLAIM_IDLE_MS": "2000",
        "VARY_AGGREGATE_CLAIM_EVERY_S": "1",
    }


class AggregateProcess:
    """One ``vary aggregate`` child process, its output in a log file."""

    def __init__(self, env: dict[str, str], name: str, log_path: Path) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
        full_env.update(env)
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        vary = Path(sys.executable).with_name("vary")
        self.process = subprocess.Popen(
            [str(vary), "aggregate", "--consumer", name], env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def wait_consuming(self, timeout: float = 60.0) -> None:
        """Until the process has created its groups and reads (it prints a line then)."""
        deadline = time.monotonic() + timeout
        while "reading" not in self.log_path.read_text(errors="replace"):
            assert self.process.poll() is None, "vary aggregate exited:\n" + self.output()
            assert time.monotonic() < deadline, "vary aggregate did not start:\n" + self.output()
            time.sleep(0.1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture
def cluster_url(valkey_cluster: EmbeddedCluster) -> str:
    client = sync_redis(Settings(redis_url=valkey_cluster.url))
    client.flushall()
    client.close()
    return valkey_cluster.url


@pytest.fixture
def apis(cluster_url: str, model_dir: Path, tmp_path: Path) -> Iterator[list[VaryProcess]]:
    processes = []
    for name in ("api-a", "api-b"):
        data_dir = tmp_path / name
        shutil.copytree(model_dir / "models", data_dir / "models")  # the session's demo model
        processes.append(VaryProcess(_env(cluster_url, data_dir), data_dir))
    try:
        for process in processes:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.fixture
def aggregators(cluster_url: str, tmp_path: Path) -> Iterator[list[AggregateProcess]]:
    env = _env(cluster_url, tmp_path / "aggregate")
    processes = [AggregateProcess(env, name, tmp_path / f"{name}.log") for name in ("agg-a", "agg-b")]
    try:
        for process in processes:
            process.wait_consuming()
        yield processes
    finally:
        for process in processes:
            process.stop()


async def _drive(bases: list[str], ledger: Ledger, visitors: range, concurrency: int = 12) -> None:
    headers = {"Authorization": f"Bearer {DELIVERY}"}
    # Never reuse a connection idle for about as long as uvicorn keeps it (5 s): on a busy machine the
    # server's close and our next request can cross, which is a client race, not a Vary failure.
    limits = httpx.Limits(max_connections=concurrency, keepalive_expiry=1.0)
    clients = [httpx.AsyncClient(base_url=b, headers=headers, timeout=30, limits=limits) for b in bases]
    gate = asyncio.Semaphore(concurrency)

    async def personalize(client: httpx.AsyncClient, visitor: str) -> dict[str, tuple[str | None, int, bool]]:
        response = await client.post("/v1/personalize", json={"visitor": {"id": visitor}, "entries": ENTRIES})
        assert response.status_code == 200, response.text
        return ledger.record(visitor, response.json())

    async def convert(client: httpx.AsyncClient, visitor: str, retry: bool) -> None:
        event = {"type": "conversion", "visitor_id": visitor, "goal": GOAL, "event_id": f"{visitor}-{GOAL}"}
        response = await client.post("/v1/events", json={"events": [event]})
        assert response.status_code in (200, 201, 202), response.text
        body = response.json()
        assert body["rejected"] == [] and body.get("spooled", 0) == 0, body
        ledger.accepted += body["accepted"]
        ledger.duplicates += body["duplicates"]
        if not retry:
            ledger.converters.add(visitor)

    async def one(i: int) -> None:
        visitor = f"cluster-v{i:05d}"
        here, there = clients[i % 2], clients[(i + 1) % 2]
        async with gate:
            decided = await personalize(here, visitor)
            if i % 3 == 0:  # converts, through the other API process
                await convert(there, visitor, retry=False)
                if i % 9 == 0:  # a retried batch, through the first one: must count once
                    ledger.retried += 1
                    await convert(here, visitor, retry=True)
            if i % 5 == 0:  # the other API process must decide the same
                again = await personalize(there, visitor)
                ledger.compared += 1
                if again != decided:
                    ledger.mismatches.append((visitor, decided, again))

    try:
        await asyncio.gather(*(one(i) for i in visitors))
    finally:
        for client in clients:
            await client.aclose()


def _pending_of(cluster_url: str, consumer: str) -> int:
    """Entries delivered to ``consumer`` and not acknowledged, over every partition."""
    store = sync_redis(Settings(redis_url=cluster_url), decode_responses=True)
    try:
        total = 0
        for stream in all_streams(EXPOSURES, PARTITIONS) + all_streams(EVENTS, PARTITIONS):
            for row in store.xpending(stream, GROUP).get("consumers", []):
                if row["name"] == consumer:
                    total += int(row["pending"])
        return total
    finally:
        store.close()


def _settled(store: Any) -> bool:
    """Every entry of every partition read by the group and acknowledged."""
    for stream in all_streams(EXPOSURES, PARTITIONS) + all_streams(EVENTS, PARTITIONS):
        groups = {g["name"]: g for g in store.xinfo_groups(stream)}
        group = groups.get(GROUP)
        if group is None or group["pending"] or group.get("lag"):
            return False
    return True


def _results(base: str, experiences: set[str], store: Any, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    previous: dict[str, Any] | None = None
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        while True:
            current = {}
            for key in sorted(experiences):
                response = http.get(f"/v1/experiences/{key}/results")
                assert response.status_code == 200, response.text
                current[key] = response.json()
            if _settled(store) and current == previous:
                return current
            assert time.monotonic() < deadline, "aggregates still moving or entries still pending"
            previous = current
            time.sleep(1.0)


def test_two_apis_two_aggregators_one_killed_count_everything_once(
    apis: list[VaryProcess], aggregators: list[AggregateProcess], cluster_url: str
) -> None:
    started = time.monotonic()
    bases = [api.base for api in apis]
    ledger = Ledger()
    killed, survivor = aggregators
    # SIGKILL agg-a in the middle of a batch: as soon as it holds entries it has read and not yet
    # acknowledged (after the first few hundred visitors), while the traffic goes on.
    orphaned: list[int] = []
    done = threading.Event()

    def assassin() -> None:
        time.sleep(3.0)
        deadline = None  # the aggregators still drain the backlog for a while after the traffic
        while deadline is None or time.monotonic() < deadline:
            if _pending_of(cluster_url, "agg-a"):
                break
            if deadline is None and done.is_set():
                deadline = time.monotonic() + 15.0
            time.sleep(0.02)
        killed.kill()
        orphaned.append(_pending_of(cluster_url, "agg-a"))

    thread = threading.Thread(target=assassin, daemon=True)
    thread.start()
    try:
        asyncio.run(_drive(bases, ledger, range(VISITORS)))
    finally:
        done.set()
        thread.join(timeout=40)
    assert killed.process.poll() is not None
    assert orphaned and orphaned[0] > 0, "agg-a never held unacknowledged entries while it ran"
    driven_s = time.monotonic() - started
    assert survivor.process.poll() is None, survivor.output()

    # The event endpoint told the clients the truth about duplicates.
    assert ledger.accepted == len(ledger.converters) and ledger.duplicates == ledger.retried > 0

    # Both API processes decide the same for the same visitor.
    assert ledger.compared >= VISITORS // 5 and ledger.mismatches == [], ledger.mismatches[:5]

    store = sync_redis(Settings(redis_url=cluster_url), decode_responses=True)
    try:
        # The writers put every exposure served into the partitions, once.
        logged = [
            json.loads(fields["data"])
            for stream in all_streams(EXPOSURES, PARTITIONS)
            for _, fields in store.xrange(stream)
        ]
        # The global holdout's own exposure (no entry's id, so no client is told of it): one per answer.
        in_streams = [x["id"] for x in logged if x["experience"] != GLOBAL_EXPERIENCE]
        assert len(logged) - len(in_streams) == ledger.requests, (len(logged) - len(in_streams), ledger.requests)
        assert len(in_streams) == len(set(in_streams)) and set(in_streams) == ledger.served, (
            len(in_streams), len(set(in_streams)), len(ledger.served)
        )
        experiences = {experience for experience, _ in ledger.exposures}
        results = _results(bases[0], experiences, store)
    except AssertionError:
        print("\n--- surviving aggregator\n" + survivor.output() + "\n--- killed aggregator\n" + killed.output())
        print("\n--- api a\n" + apis[0].output() + "\n--- api b\n" + apis[1].output())
        raise
    finally:
        store.close()

    for experience, body in results.items():
        arms = len(body["exposures"])
        expected_exposures = [len(ledger.exposures.get((experience, v), ())) for v in range(arms)]
        expected_visitors = [len(ledger.visitors.get((experience, v), ())) for v in range(arms)]
        assert body["exposures"] == expected_exposures, (experience, body["exposures"], expected_exposures)
        assert body["visitors"] == expected_visitors, (experience, body["visitors"], expected_visitors)
        assert body["holdout_visitors"] == len(ledger.visitors.get((experience, "h"), ())), experience
        assert body["variant_conflicts"] == 0 and body["anonymous_exposures"] == 0, experience
        if GOAL in body["goals"]:
            converted = [len(ledger.visitors.get((experience, v), set()) & ledger.converters) for v in range(arms)]
            counted = [variant["conversions"] for variant in body["goals"][GOAL]["variants"]]
            assert counted == converted, (experience, counted, converted)

    shipping = results["banner-shipping-test"]
    assert sum(shipping["exposures"]) > VISITORS  # every visitor, plus the ones asked twice (minus holdout)
    assert sum(v["conversions"] for v in shipping["goals"][GOAL]["variants"]) > 0
    print(
        f"\n{VISITORS} visitors, {len(ledger.served)} exposures, {len(ledger.converters)} converters "
        f"({ledger.retried} retried) through 2 API processes in {driven_s:.1f} s; "
        f"banner-shipping-test exposures {shipping['exposures']}, holdout {shipping['holdout_visitors']}; "
        f"{orphaned[0]} entries pending at the killed aggregator were claimed by the survivor"
    )
