"""``python -m bench.run [--quick]``: every benchmark of issue 7, one JSON and one table.

Sections (each can be picked with ``--only``):

* ``decision`` — ``decide()`` vs GrowthBook's ``gb.run`` (:mod:`bench.decision`);
* ``scoring`` — the compiled serving path vs ``Pipeline.predict_proba`` (:mod:`bench.scoring`);
* ``scale`` — decision cost vs experiences per request and vs space size (:mod:`bench.scale`);
* ``exposures`` — ``ExposureWriter`` vs a raw pipelined XADD loop (:mod:`bench.exposures`);
* ``http`` — ``POST /v1/personalize`` vs a bare Litestar + msgspec echo app under the same server and
  worker count, alternating rounds at 64 connections, then Vary's curve at 1–128 connections
  (:mod:`bench.http`, :mod:`bench.servers`);
* ``servers`` — the same HTTP comparison under each available ASGI server at 1 and 2 workers, to
  choose ``vary serve``'s default (full runs only, or ``--only servers``).

Results: ``bench/results/latest.json`` (every comparison as ``{"vary", "baseline", "ratio", "target",
...}``, plus the machine: CPU count and model, load average before and after) and
``bench/results/latest.md`` (the tables). ``--quick`` finishes in under two minutes on 2 cores.
The exit status is 0 even when a target is missed: the table says so; a benchmark that could not run
(wrk missing and not installable, a server that does not start) exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, comparison, load_average, machine

__all__ = ["main", "run"]

SECTIONS = ("decision", "sdk", "scoring", "scale", "exposures", "http", "servers")
HTTP_TARGET_RATIO = 0.5
#: Issue 22: p99 at 64 connections at most 3x the echo app's p99 in the same run …
HTTP_TARGET_P99_RATIO = 3.0
#: … and p99 at most 4x p50 at each of these connection counts of the curve.
HTTP_TARGET_TAIL = 4.0
TAIL_CONNECTIONS = (8, 32, 64)
HTTP_CONNECTIONS = 64
CURVE = (1, 8, 32, 64, 128)


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# -------------------------------------------------------------------------------------------------
# CPU accounting of a server's process group (robust against other load on the machine)
# -------------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds of every live process in process group ``pgid``."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); pgrp is field 5, utime 14, stime 15
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _pid_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of the children it has reaped (Valkey's: the forked
    append-only-file rewrites, which run on the same cores as everything else, about a tenth of
    Valkey's own CPU under the benchmark's writes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _TICK  # + cutime, cstime


# -------------------------------------------------------------------------------------------------
# HTTP
# -------------------------------------------------------------------------------------------------


class HttpBench:
    """Valkey + data dir shared by every server started in one benchmark run."""

    def __init__(self, tmp: Path, redis_url: str, valkey_pid: int | None, quick: bool) -> None:
        from bench.http import write_script
        from bench.servers import DELIVERY_KEY

        self.tmp = tmp
        self.data_dir = tmp / "data"
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.redis_url = redis_url
        self.valkey_pid = valkey_pid
        self.quick = quick
        self.script = write_script(tmp / "personalize.lua", DELIVERY_KEY)
        self.duration = 4.0 if quick else 10.0
        #: Issue 22: every figure is the median of at least 3 alternating rounds, the quick run's too.
        self.rounds = 3 if quick else 5

    def _xlen(self) -> int:
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return int(client.xlen("vary:exposures"))
        finally:
            client.close()

    def runner(self, server: Any, connections: int, vary: bool, duration: float | None = None) -> Any:
        from bench.http import run_wrk

        url = f"http://127.0.0.1:{server.port}/v1/personalize"

        def run(prefix: str) -> dict[str, Any]:
            xlen = self._xlen() if vary else 0
            warnings = _count_degraded(server.log_path) if vary else 0
            cpu, valkey_cpu = _group_cpu_s(server.process.pid), _pid_cpu_s(self.valkey_pid or 0)
            result = run_wrk(url, self.script, connections, duration or self.duration, prefix=prefix)
            result["server_cpu_ms_per_request"] = (
                (_group_cpu_s(server.process.pid) - cpu) * 1000 / max(1, result["requests"])
            )
            result["valkey_cpu_ms_per_request"] = (
                (_pid_cpu_s(self.valkey_pid or 0) - valkey_cpu) * 1000 / max(1, result["requests"])
            )
            if vary:
                time.sleep(0.5)  # the writer flushes its last batch
                result["exposures_written"] = self._xlen() - xlen
                result["degraded"] = _count_degraded(server.log_path) - warnings
            return result

        return run

    def sanity(self, vary: Any, echo: Any) -> dict[str, Any]:
        """One request to each: 200, three decided entries, and the response sizes."""
        import urllib.request

        from bench.http import request_body
        from bench.servers import DELIVERY_KEY

        sizes = {}
        for name, server in (("vary", vary), ("baseline", echo)):
            body = request_body("sanity-visitor-0000-0000-000000000000").encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{server.port}/v1/personalize", data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {DELIVERY_KEY}"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                payload = response.read()
            decoded = json.loads(payload)
            if len(decoded.get("entries", [])) != 3:
                raise RuntimeError(f"{name}: expected 3 entries, got {payload[:300]!r}")
            if name == "vary" and not any(e.get("experience") for e in decoded["entries"]):
                raise RuntimeError(f"vary decided no experience at all: {payload[:500]!r}")
            sizes[name] = {"request_bytes": len(body), "response_bytes": len(payload)}
        return sizes

    def compare(self, kind: str, workers: int, rounds: int, duration: float, curve: bool) -> dict[str, Any]:
        from bench.http import alternate, run_wrk
        from bench.servers import start_echo, start_vary

        _log(f"http: starting Vary and the echo app ({kind}, {workers} worker(s))")
        vary = start_vary(kind, workers, self.data_dir, self.redis_url, self.logs)
        echo = None
        try:
            echo = start_echo(kind, workers, self.logs)
            sizes = self.sanity(vary, echo)
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "vary": []}

            def record(name: str, fn: Any) -> Any:
                def go(prefix: str) -> dict[str, Any]:
                    result = fn(prefix)
                    runs[name].append(result)
                    _log(f"http {kind}/{workers}w {name}: {result['rps']:.0f} req/s, p99 {result['p99_ms']:.1f} ms")
                    return result
                return go

            runners = {
                "baseline": record("baseline", self.runner(echo, HTTP_CONNECTIONS, vary=False, duration=duration)),
                "vary": record("vary", self.runner(vary, HTTP_CONNECTIONS, vary=True, duration=duration)),
            }

            def warmup(name: str) -> None:
                server = echo if name == "baseline" else vary
                run_wrk(f"http://127.0.0.1:{server.port}/v1/personalize", self.script, HTTP_CONNECTIONS, 1,
                        prefix=f"warm{name}")

            summary = alternate(runners, rounds, warmup=warmup)
            for name in ("baseline", "vary"):
                summary[name]["server_cpu_ms_per_request"] = _median([r["server_cpu_ms_per_request"] for r in runs[name]])
                summary[name]["client_cpu_ms_per_request"] = _median([r["client_cpu_ms_per_request"] for r in runs[name]])
                summary[name]["runs"] = [_slim(r) for r in runs[name]]
            summary["vary"]["valkey_cpu_ms_per_request"] = _median([r["valkey_cpu_ms_per_request"] for r in runs["vary"]])
            summary["vary"]["degraded"] = sum(r["degraded"] for r in runs["vary"])
            summary["vary"]["exposures_written"] = sum(r["exposures_written"] for r in runs["vary"])
            summary["vary"]["exposures_expected_at_least"] = 3 * summary["vary"]["requests"]
            result = {"server": kind, "workers": workers, "connections": HTTP_CONNECTIONS, "rounds": rounds,
                      "duration_s": duration, "sizes": sizes, **summary}
            if curve:
                result["curve"] = self.curve(vary)
            return result
        finally:
            if echo is not None:
                echo.stop()
            vary.stop()

    def curve(self, vary: Any) -> list[dict[str, Any]]:
        """Vary alone at each connection count of :data:`CURVE`: the median of :attr:`rounds` rounds,
        taken in turn (1, 8, … 128, then again), so a stall of the machine lands in one round of one
        row, not in a whole row; ``p99_over_p50`` is the median of the rounds' own ratios (issue 22:
        every figure the median of at least 3 rounds)."""
        duration = 3.0 if self.quick else 8.0
        runs: dict[int, list[dict[str, Any]]] = {connections: [] for connections in CURVE}
        for round_ in range(self.rounds):
            for connections in CURVE:
                result = self.runner(vary, connections, vary=True, duration=duration)(f"c{connections}r{round_}")
                _log(f"http curve: {connections} connections, round {round_ + 1}: {result['rps']:.0f} req/s, "
                     f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.1f} ms")
                runs[connections].append(result)
        rows = []
        for connections, results in runs.items():
            rows.append({
                "connections": connections,
                "rounds": len(results),
                **{key: _median([r[key] for r in results])
                   for key in ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")},
                "p99_over_p50": _median([r["p99_ms"] / r["p50_ms"] for r in results if r["p50_ms"]]),
                "degraded": sum(r["degraded"] for r in results),
            })
        return rows


def _median(values: list[float]) -> float:
    import statistics

    return statistics.median(values) if values else 0.0


def _slim(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("rps", "p50_ms", "p99_ms", "requests", "socket_errors", "server_cpu_ms_per_request",
            "valkey_cpu_ms_per_request", "client_cpu_ms_per_request", "exposures_written", "degraded")
    return {k: result[k] for k in keep if k in result}


def _count_degraded(log_path: Path) -> int:
    try:
        return len(re.findall(r"profile read failed", log_path.read_text(errors="replace")))
    except OSError:
        return 0


def _http_comparisons(result: dict[str, Any]) -> list[dict[str, Any]]:
    vary, base = result["vary"], result["baseline"]
    where = f"{result['server']}, {result['workers']} worker(s), {result['connections']} connections"
    common = {
        "server": result["server"], "workers": result["workers"], "connections": result["connections"],
        "rounds": result["rounds"], "duration_s": result["duration_s"], "sizes": result["sizes"],
        "vary_detail": vary, "baseline_detail": base,
    }
    return [
        comparison(
            f"POST /v1/personalize throughput vs echo app ({where})", "http", "req/s",
            vary["rps"]["median"], base["rps"]["median"], HTTP_TARGET_RATIO, target_on="ratio",
            better="higher", **common,
        ),
        comparison(
            f"POST /v1/personalize p99 vs echo app's p99 ({where})", "http", "ms", vary["p99_ms"]["median"],
            base["p99_ms"]["median"], HTTP_TARGET_P99_RATIO, target_on="ratio", better="lower",
        ),
        comparison(
            f"server CPU per request ({where})", "http", "ms CPU/request",
            vary["server_cpu_ms_per_request"], base["server_cpu_ms_per_request"], 1 / HTTP_TARGET_RATIO,
            target_on="ratio", better="lower",
            note="CPU time of the server's processes per completed request: insensitive to other load",
        ),
        *_tail_comparisons(result.get("curve", [])),
    ]


def _tail_comparisons(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tail against the median (issue 22): the worst p99 ÷ p50 of the curve at 8, 32 and 64
    connections (each the median of its rounds' ratios). No baseline: it is Vary's own distribution."""
    rows = [row for row in curve if row["connections"] in TAIL_CONNECTIONS and row["p50_ms"]]
    if not rows:
        return []
    worst = max(rows, key=_tail_ratio)
    return [
        comparison(
            f"p99 ÷ p50, worst of {', '.join(str(c) for c in TAIL_CONNECTIONS)} connections "
            f"({worst['connections']} connections)", "http", "×", _tail_ratio(worst), None,
            HTTP_TARGET_TAIL, target_on="vary", better="lower",
        )
    ]


def _tail_ratio(row: dict[str, Any]) -> float:
    """A curve row's p99 ÷ p50: the median of its rounds' ratios (a row of an older result file has
    one run, hence only its p99 and p50)."""
    return float(row.get("p99_over_p50") or row["p99_ms"] / row["p50_ms"])


def _run_http(results: dict[str, Any], quick: bool, sections: set[str], kind: str | None, workers: int | None) -> None:
    from bench import exposures
    from bench.http import ensure_wrk
    from bench.servers import allocator_of, available_kinds, prepare_data_dir, serve_default, valkey

    with tempfile.TemporaryDirectory(prefix="vary-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data_dir = tmp / "data"
        data_dir.mkdir()
        with valkey(data_dir) as url:
            valkey_pid = _valkey_pid(data_dir)
            if "exposures" in sections:
                _log("exposures: ExposureWriter vs raw XADD")
                results["comparisons"] += exposures.run(url, quick)
            if not sections & {"http", "servers"}:
                return
            ensure_wrk()
            _log("http: training the demo segment model for the server (once)")
            prepare_data_dir(data_dir)
            bench = HttpBench(tmp, url, valkey_pid, quick)
            if "http" in sections:
                chosen_kind = kind or "vary-serve"
                from api.settings import Settings

                chosen_workers = workers or Settings().workers
                result = bench.compare(chosen_kind, chosen_workers, bench.rounds, bench.duration, curve=True)
                result["vary_serve_runs"] = serve_default() if chosen_kind == "vary-serve" else chosen_kind
                from bench.report import cores_bound

                result["cores_bound"] = cores_bound(result, os.cpu_count() or 0)
                result["valkey_allocator"] = allocator_of(valkey_pid or 0)
                results["http"] = result
                results["comparisons"] += _http_comparisons(result)
            if "servers" in sections:
                matrix = []
                for server_kind in available_kinds():
                    for n in (1, 2):
                        try:
                            res = bench.compare(server_kind, n, 2, 3.0 if quick else 6.0, curve=False)
                        except Exception as exc:  # one server failing must not cost the others
                            matrix.append({"server": server_kind, "workers": n, "error": str(exc)[:500]})
                            continue
                        matrix.append({
                            "server": server_kind, "workers": n,
                            "vary_rps": res["vary"]["rps"]["median"], "vary_p99_ms": res["vary"]["p99_ms"]["median"],
                            "baseline_rps": res["baseline"]["rps"]["median"],
                            "baseline_p99_ms": res["baseline"]["p99_ms"]["median"],
                            "ratio": res["vary"]["rps"]["median"] / res["baseline"]["rps"]["median"],
                            "vary_cpu_ms_per_request": res["vary"]["server_cpu_ms_per_request"],
                            "degraded": res["vary"]["degraded"],
                        })
                results["servers"] = matrix


def _valkey_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "redis" / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


# -------------------------------------------------------------------------------------------------
# The whole run
# -------------------------------------------------------------------------------------------------


def run(quick: bool, sections: set[str], kind: str | None = None, workers: int | None = None) -> dict[str, Any]:
    started = time.monotonic()
    results: dict[str, Any] = {
        "quick": quick,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {**machine(), "load_average_start": load_average()},
        "comparisons": [],
        "errors": [],
    }
    if "decision" in sections:
        _log("decision: decide() vs gb.run")
        from bench import decision

        _guard(results, "decision", lambda: results["comparisons"].extend(decision.run(quick)))
    if "sdk" in sections:
        _log("sdk: local decisions (JS and Python SDKs) vs GrowthBook's SDKs")
        from bench import sdk

        _guard(results, "sdk", lambda: results["comparisons"].extend(sdk.run(quick)))
    if "scoring" in sections:
        _log("scoring: serving path vs Pipeline.predict_proba")
        from bench import scoring

        def do_scoring() -> None:
            scored = scoring.run(quick)
            for row in scored["comparisons"]:
                results["comparisons"].append(comparison(
                    f"scoring: {row['name']}", "scoring", "µs/visitor", row["vary_us"], row["baseline_us"],
                    1 / float(row["target"]), target_on="ratio", better="lower", method=scored["method"],
                    speedup=row["baseline_us"] / row["vary_us"],
                ))

        _guard(results, "scoring", do_scoring)
    if "scale" in sections:
        _log("scale: experiences per request, space size")
        from bench import scale

        _guard(results, "scale", lambda: results.__setitem__("scale", scale.run(quick)))
    if sections & {"exposures", "http", "servers"}:
        _guard(results, "http", lambda: _run_http(results, quick, sections, kind, workers))
    results["machine"]["load_average_end"] = load_average()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def _guard(results: dict[str, Any], section: str, fn: Any) -> None:
    try:
        fn()
    except Exception as exc:
        traceback.print_exc()
        results["errors"].append({"section": section, "error": f"{type(exc).__name__}: {exc}"[:2000]})


def main(argv: list[str] | None = None) -> int:
    from bench.report import write_markdown

    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter runs: under 2 minutes")
    parser.add_argument("--only", help=f"comma-separated sections ({', '.join(SECTIONS)})")
    parser.add_argument("--server", help="HTTP server for the main comparison (default: vary-serve, i.e. "
                        "what `vary serve` runs; or uvicorn, uvicorn-uvloop, granian)")
    parser.add_argument("--workers", type=int, help="workers for the main HTTP comparison (default: vary serve's)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    args = parser.parse_args(argv)
    if args.only:
        sections = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = sections - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    else:
        sections = set(SECTIONS) - ({"servers"} if args.quick else set())
    results = run(args.quick, sections, args.server, args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    markdown = write_markdown(results, args.out.with_suffix(".md"))
    print(markdown)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} in {results['elapsed_s']:.0f} s")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
