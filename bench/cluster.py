"""``python -m bench.cluster``: ``POST /v1/personalize`` on a 3-node Valkey cluster beside one Valkey.

The same ``vary serve`` (1 worker, ``--no-aggregate``, demo model, the body of ``bench/http.py``: a new
visitor per request, 3 entries with experiences) runs twice: against one embedded Valkey and against
a 3-node embedded cluster (``api/embedded/cluster.py``, ``VARY_REDIS_URL=redis+cluster://…``,
``VARY_STREAM_PARTITIONS=4``). wrk drives both in alternating rounds, so background load hits both
alike. What it shows: the cost the cluster client adds per request in the API process (slot routing,
one connection pool per node, the exposure batch split by node) and that nothing is lost — every
exposure of every request reaches the streams.

On one machine all nodes share the same cores, so this is not a throughput test of a cluster (that
scales with machines, see docs/scaling.md); it is the per-request price of cluster mode.

Results: ``bench/results/cluster.json`` and ``cluster.md``. About a minute on 2 cores; ``make bench``
runs it after ``bench.run``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from api.embedded.cluster import EmbeddedCluster
from api.embedded.valkey import EmbeddedRedis
from api.redis_client import sync_redis
from api.settings import Settings
from bench.common import RESULTS_DIR, machine
from bench.http import alternate, run_wrk, write_script
from bench.servers import DELIVERY_KEY, prepare_data_dir, start_vary
from personalization.store.keys import EXPOSURES
from personalization.store.partitions import all_streams

PARTITIONS = 4
CONNECTIONS = 32


def _pgroup_cpu_s(pid: int) -> float:
    from bench.run import _group_cpu_s

    return _group_cpu_s(pid)


def _exposures(url: str, cluster: bool) -> int:
    if cluster:
        client = sync_redis(Settings(redis_url=url))
        try:
            return sum(int(client.xlen(s)) for s in all_streams(EXPOSURES, PARTITIONS))
        finally:
            client.close()
    single = redis.Redis.from_url(url)
    try:
        return int(single.xlen(EXPOSURES))
    finally:
        single.close()


def run(duration_s: float = 6.0, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vary-bench-cluster-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        cache = tmp / "model-cache"
        for name in ("single", "cluster"):
            prepare_data_dir(tmp / name / "vary", model_cache=cache)  # one training, copied
        single = EmbeddedRedis(tmp / "single-valkey", appendonly=False)
        single_url = single.start()
        stack.callback(single.stop)
        cluster = EmbeddedCluster(tmp / "cluster-valkey", nodes=3)
        cluster_url = cluster.start()
        stack.callback(cluster.stop)
        servers = {
            "single": start_vary("vary-serve", 1, tmp / "single" / "vary", single_url, tmp / "single",
                                 {"VARY_STREAM_PARTITIONS": "1"}),
            "cluster": start_vary("vary-serve", 1, tmp / "cluster" / "vary", cluster_url, tmp / "cluster",
                                  {"VARY_STREAM_PARTITIONS": str(PARTITIONS)}),
        }
        for server in servers.values():
            stack.callback(server.stop)
        urls = {"single": single_url, "cluster": cluster_url}
        script = write_script(tmp / "personalize.lua", DELIVERY_KEY)

        measured: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}

        def runner(name: str, keep: bool = True) -> Any:
            server = servers[name]

            def go(prefix: str) -> dict[str, Any]:
                before = _exposures(urls[name], name == "cluster")
                cpu = _pgroup_cpu_s(server.process.pid)
                result = run_wrk(f"http://127.0.0.1:{server.port}/v1/personalize", script, CONNECTIONS,
                                 duration_s, prefix=prefix)
                result["cpu_ms_per_request"] = (_pgroup_cpu_s(server.process.pid) - cpu) * 1000 / max(1, result["requests"])
                time.sleep(0.7)  # the writer flushes its last batch
                result["exposures_written"] = _exposures(urls[name], name == "cluster") - before
                if keep:
                    measured[name].append(result)
                return result

            return go

        sides = alternate({name: runner(name) for name in servers}, rounds,
                          warmup=lambda name: runner(name, keep=False)(f"w{name[:1]}"))
        out: dict[str, Any] = {}
        for name, side in sides.items():
            runs = measured[name]
            requests = side["requests"]
            exposures = sum(r.get("exposures_written", 0) for r in runs) if runs else None
            out[name] = {
                "rps": side["rps"],
                "p50_ms": side["p50_ms"],
                "p99_ms": side["p99_ms"],
                "requests": requests,
                "cpu_ms_per_request": round(sum(r["cpu_ms_per_request"] for r in runs) / len(runs), 3) if runs else None,
                "exposures_written": exposures,
                "exposures_expected": 3 * requests,
            }
        return out


def report(result: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"# Vary on a 3-node Valkey cluster vs one Valkey ({meta['when']})",
        "",
        (
            f"Machine: {meta['machine']}. `vary serve`, 1 worker, wrk {CONNECTIONS} connections, "
            f"{meta['rounds']} alternating rounds of {meta['duration_s']:g} s per side; every request a new "
            f"visitor, 3 entries with experiences. Cluster: 3 primaries on loopback, "
            f"`VARY_STREAM_PARTITIONS={PARTITIONS}`."
        ),
        "",
        "| Redis | req/s (median) | p50 ms | p99 ms | API CPU ms/request | exposures written / expected |",
        "|---|---|---|---|---|---|",
    ]
    for name, side in result.items():
        lines.append(
            f"| {name} | {side['rps']['median']:,.0f} | {side['p50_ms']['median']:.1f} | {side['p99_ms']['median']:.1f} | "
            f"{side['cpu_ms_per_request']} | {side['exposures_written']:,} / {side['exposures_expected']:,} |"
        )
    single, cluster = result["single"], result["cluster"]
    ratio_rps = cluster["rps"]["median"] / single["rps"]["median"]
    ratio_cpu = cluster["cpu_ms_per_request"] / single["cpu_ms_per_request"]
    lines += ["", f"Cluster ÷ single: throughput {ratio_rps:.2f}×, API CPU per request {ratio_cpu:.2f}×."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per wrk run (default 6)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    result = run(args.duration, args.rounds)
    meta = {"when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine_line(),
            "duration_s": args.duration, "rounds": args.rounds}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster.json").write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    text = report(result, meta)
    (args.out / "cluster.md").write_text(text)
    print(text)
    return 0


def machine_line() -> str:
    info = machine()
    return f"{info['cpu_count']} CPUs, {info['cpu_model']}; Python {info['python']}"


if __name__ == "__main__":
    raise SystemExit(main())
