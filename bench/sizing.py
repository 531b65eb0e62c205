"""Redis memory per visitor, per exposure, per event and per experience, measured on real writes.

``.venv/bin/python -m bench.sizing [--visitors 2000]`` starts its own embedded Valkey (no AOF, so
memory is data only), runs the app in-process (``TestClient``, in-process aggregator) on the demo
space and model, and writes real traffic through the API in two phases, measuring after each once
the aggregator has caught up:

1. **personalize**: one ``POST /v1/personalize`` per new visitor for the demo's entries with
   experiences — profiles, sticky assignments, exposures, aggregates;
2. **events**: one ``page_view`` per visitor and a ``conversion`` (with ``event_id``) for one in four.

Every key is measured with ``MEMORY USAGE … SAMPLES 0`` and grouped by shape (bench/capacity.py);
``INFO memory`` ``used_memory`` before and after is the all-in cross-check (allocator overhead,
stream nodes, dict tables). Prints a Markdown table; docs/scaling.md quotes it. ``bench.capacity``
measures the same through a real HTTP server with commands per request; this one is quick (about a
minute) and needs no server process, so it can be re-run after any change to what Vary stores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis
from litestar.testing import TestClient

from api.app import create_app
from api.embedded.valkey import EmbeddedRedis
from api.settings import Settings
from bench.capacity import _grown, _kind, _memory_by_shape, _settled
from personalization.demo.data import train_demo_model

DELIVERY = "sizing-delivery"
ADMIN = "sizing-admin"
#: The demo entries that carry experiences (as bench/http.py sends them).
ENTRIES = ["heroHome", "bannerShipping", "bannerNewsletter"]


def _snapshot(store: redis.Redis) -> dict[str, Any]:
    return {"used": int(store.info("memory")["used_memory"]), "shapes": _memory_by_shape(store)}


def _settle(store: redis.Redis, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not _settled(store):
        if time.monotonic() > deadline:
            raise SystemExit("the aggregator did not catch up")
        time.sleep(0.5)


def _xlen(store: redis.Redis, prefix: str) -> int:
    return sum(int(store.xlen(k)) for k in store.scan_iter(match=f"{prefix}*", _type="stream"))


def _by_kind(grown: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for shape, (keys, size) in grown.items():
        kind = _kind(shape)
        if shape.startswith("vary:exposures"):
            kind = "exposure stream"
        elif shape.startswith("vary:events"):
            kind = "event stream"
        kinds[kind][0] += keys
        kinds[kind][1] += size
    return {k: (v[0], v[1]) for k, v in kinds.items()}


def measure(visitors: int, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    (data_dir / "models").mkdir(parents=True)
    train_demo_model(data_dir / "models")
    server = EmbeddedRedis(workdir / "valkey", appendonly=False)
    server.start()
    store = redis.Redis.from_url(server.url, decode_responses=True)
    delivery = {"Authorization": f"Bearer {DELIVERY}"}
    settings = Settings(redis_url=server.url, data_dir=data_dir, delivery_keys=(DELIVERY,), admin_keys=(ADMIN,),
                        train_demo_model=False, rate_limit_delivery_per_s=0)
    try:
        with TestClient(create_app(settings)) as app:
            app.post("/v1/personalize", json={"visitor": {"id": "warm-up"}, "entries": ENTRIES}, headers=delivery)
            time.sleep(1.0)
            _settle(store)
            before = _snapshot(store)
            exposures_before = _xlen(store, "vary:exposures")
            for i in range(visitors):
                body = {"visitor": {"id": f"size-{i}"}, "entries": ENTRIES}
                answer = app.post("/v1/personalize", json=body, headers=delivery)
                assert answer.status_code == 200, answer.text
            deadline = time.monotonic() + 60
            while _xlen(store, "vary:exposures") - exposures_before < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)  # the writer's last batch
            _settle(store)
            after_personalize = _snapshot(store)
            exposures = _xlen(store, "vary:exposures") - exposures_before
            events_before = _xlen(store, "vary:events")
            for start in range(0, visitors, 100):
                batch = []
                for i in range(start, min(visitors, start + 100)):
                    batch.append({"type": "page_view", "visitor_id": f"size-{i}", "session_id": f"s-{i}",
                                  "channel": "web"})
                    if i % 4 == 0:
                        batch.append({"type": "conversion", "visitor_id": f"size-{i}", "goal": "purchase",
                                      "event_id": f"size-c-{i}"})
                answer = app.post("/v1/events", json={"events": batch}, headers=delivery)
                assert answer.status_code == 202, answer.text
            time.sleep(1.0)
            _settle(store)
            after_events = _snapshot(store)
            events = _xlen(store, "vary:events") - events_before
            experiences = len({k.split("}")[0] for k in store.scan_iter(match="vary:agg:{*}:all")})
            maxmemory_policy = store.config_get("maxmemory-policy")["maxmemory-policy"]
    finally:
        store.close()
        server.stop()
    return {
        "visitors": visitors,
        "exposures": exposures,
        "events": events,
        "experiences": experiences,
        "maxmemory_policy": maxmemory_policy,
        "personalize": _by_kind(_grown(after_personalize["shapes"], before["shapes"])),
        "events_phase": _by_kind(_grown(after_events["shapes"], after_personalize["shapes"])),
        "used_personalize": after_personalize["used"] - before["used"],
        "used_events": after_events["used"] - after_personalize["used"],
    }


def report(run: dict[str, Any]) -> str:
    n, x, e, k = run["visitors"], run["exposures"], run["events"], max(1, run["experiences"])
    p, ev = run["personalize"], run["events_phase"]

    def size(table: dict[str, tuple[int, int]], kind: str) -> int:
        return table.get(kind, (0, 0))[1]

    rows = [
        ("per visitor: profile + sticky assignments + aggregation state", size(p, "per visitor") + size(ev, "per visitor"), n,
         "visitors"),
        ("per visitor and active day: aggregation outcomes", size(p, "per visitor and day (expires)")
         + size(ev, "per visitor and day (expires)"), n, "visitors"),
        ("per exposure kept in a stream", size(p, "exposure stream"), x, "exposures"),
        ("per event kept in a stream", size(ev, "event stream"), e, "events"),
        ("per event: idempotency guard", size(ev, "event-id guard (7 days)"), e, "events"),
        ("per stream entry: dedupe markers", size(p, "dedupe marker (expires)") + size(ev, "dedupe marker (expires)"),
         x + e, "stream entries"),
        ("per running experience (aggregates, this traffic)", size(p, "per experience") + size(ev, "per experience"), k,
         "experiences"),
    ]
    lines = [
        (f"{n} visitors × {len(ENTRIES)} entries → {x} exposures, {e} events, {run['experiences']} experiences "
         f"(maxmemory-policy {run['maxmemory_policy']})"),
        "",
        "| what | bytes each | total bytes | units |",
        "|---|---:|---:|---:|",
    ]
    for label, total, units, unit in rows:
        lines.append(f"| {label} | {round(total / max(1, units)):,} | {total:,} | {units:,} {unit} |")
    used = run["used_personalize"] + run["used_events"]
    lines += [
        "",
        (f"`used_memory` grew by {used:,} bytes: {round(used / n):,} per visitor, everything included "
         f"(personalize {run['used_personalize']:,}, events {run['used_events']:,})."),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, default=2000)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vary-sizing-"))
    try:
        print(report(measure(args.visitors, workdir)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
