"""Prometheus metrics: the series Vary exports, how every worker's values reach one scrape, and
how the counters Vary already keeps get there without being counted twice.

Why this shape:

* **Every worker reports.** ``vary serve`` runs several uvicorn worker processes and a scrape
  reaches one of them. In prometheus-client's multiprocess mode each process writes its values to
  memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` and the scraped worker sums them all.
  :func:`multiprocess_dir` makes that directory (``<data dir>/metrics``), empties it at start
  (files of a previous run would be summed in) and sets the variable while the workers spawn.
  Without the variable (tests, an embedding process) the ordinary in-process registry is used.
* **Counted once.** The exposure writer, the event recorder, the content coordinator, the
  personalizer and the in-process aggregator already count what they do (``/ready`` shows most of
  it). :class:`RuntimeExporter` copies those counts into the Prometheus counters as deltas — at
  every scrape and every :data:`SYNC_INTERVAL_S` in every worker — instead of a second increment in
  the hot path. Only what nothing counted yet is incremented where it happens: the request-latency
  histogram (``api/http/metrics.py``), accepted/rejected events (``api/http/events.py``) and
  rate-limited requests (``api/http/ratelimit.py``).
* **Per worker where a sum would hide it.** Event-loop lag (:data:`EVENT_LOOP_LAG`, the p99 and
  max of the last minute that ``/ready``'s ``loop_lag`` shows) is one worker's stall: summing it
  over workers means nothing and a max would hide which worker stalls. It is ``liveall``: one
  series per live worker (a ``pid`` label in multiprocess mode), dropped when the worker exits.
* **State, not totals,** (content age, model version) is read from the scraped worker's runtime at
  scrape time (:class:`StateCollector`): every worker serves the same content and model. The
  aggregator's backlog is read from Redis at scrape time (:func:`aggregator_backlog`).
* **Bounded labels.** Route templates (never raw paths), the experience and variant keys content
  defines, fixed outcome words. Nothing a visitor sends becomes a label.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric

from personalization.store import keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from api.loop_lag import LoopLagMonitor
    from api.runtime import Runtime

__all__ = [
    "AGGREGATOR_UNKNOWN_KINDS",
    "DECISIONS",
    "EVENTS",
    "EVENT_LOOP_LAG",
    "EXPOSURES",
    "MULTIPROC_VARIABLE",
    "RATE_LIMITED",
    "REQUEST_SECONDS",
    "RuntimeExporter",
    "StateCollector",
    "aggregator_backlog",
    "exposition",
    "multiprocess_dir",
    "worker_exited",
]

#: prometheus-client's variable: set, every process writes its values to files in that directory.
MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: How often each worker copies its runtime's counters into the shared files.
SYNC_INTERVAL_S = 5.0

REQUEST_SECONDS = Histogram(
    "vary_http_request_duration_seconds",
    "Time from a request's arrival to its response's end, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DECISIONS = Counter(
    "vary_decisions",
    "Entries decided, by experience (empty: no experience), variant (or 'holdout') and degraded "
    "(decided without the visitor's profile because Redis was slow or down).",
    ["experience", "variant", "degraded"],
)
EXPOSURES = Counter(
    "vary_exposures",
    "Exposures by outcome: written to the stream (replayed ones included), spooled to local disk "
    "while Redis was unreachable, replayed from the spool, resent (a restarted Redis had lost them after "
    "acknowledging them), lost (queue and spool full).",
    ["outcome"],
)
EXPOSURES_PENDING = Gauge(
    "vary_exposures_pending", "Exposures queued in the workers, not yet written.", multiprocess_mode="livesum"
)
LOCAL_BYTES = Gauge(
    "vary_local_bytes",
    "Bytes on the workers' local disk: the exposure spool, the exposure journal, the event spool.",
    ["file"],
    multiprocess_mode="livesum",
)
EVENTS = Counter(
    "vary_events",
    "Events by outcome: accepted (recorded or spooled), rejected (per event, inside a 202 or a 400), "
    "spooled to local disk while Redis was unreachable, replayed from the spool, resent (a restarted "
    "Redis had lost them after acknowledging them).",
    ["outcome"],
)
EVENT_LOOP_LAG = Gauge(
    "vary_event_loop_lag_seconds",
    "How late the worker's event loop woke up over the last minute (api/loop_lag.py, /ready's loop_lag), "
    "by stat: p99 or max. One series per worker.",
    ["stat"],
    multiprocess_mode="liveall",
)
RATE_LIMITED = Counter("vary_rate_limited_requests", "Requests refused with 429, by key scope.", ["scope"])
CONTENT_SYNCS = Counter("vary_content_syncs", "Content syncs by result (ok, failed).", ["result"])
AGGREGATOR_UNKNOWN_KINDS = Counter(
    "vary_aggregator_unknown_event_kinds",
    "Stored events the in-process aggregator skipped (acknowledged, not counted in results) because "
    "their kind is unknown to its version: a newer version's workers wrote them. Expected while a "
    "rolling upgrade is under way; still rising after it, an older aggregator is reading a newer "
    "worker's events: upgrade the aggregator (the API workers, or `vary aggregate`) to their version.",
)


@contextmanager
def multiprocess_dir(data_dir: Path) -> Iterator[Path]:
    """Make ``<data_dir>/metrics`` empty and point :data:`MULTIPROC_VARIABLE` at it while the block
    runs (``vary serve`` runs uvicorn inside it, so the workers it spawns inherit the variable); the
    variable is restored afterwards, so nothing leaks into a caller's environment."""
    path = data_dir / "metrics"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(MULTIPROC_VARIABLE)
    os.environ[MULTIPROC_VARIABLE] = str(path)
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_VARIABLE, None)
        else:
            os.environ[MULTIPROC_VARIABLE] = before


def worker_exited() -> None:
    """Drop this process's live gauges (pending exposures, spool bytes) from the shared files, so a
    stopped worker's last values are not summed in. Counters stay: they are totals."""
    if os.environ.get(MULTIPROC_VARIABLE):
        multiprocess.mark_process_dead(os.getpid())


class _Forward:
    """The in-process default registry as one collector of a per-scrape registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition(*collectors: Any) -> bytes:
    """The text format of every worker's series (or this process's) plus ``collectors``."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROC_VARIABLE):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_Forward())  # type: ignore[arg-type]
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class RuntimeExporter:
    """Copies one runtime's own counters into the Prometheus counters, as deltas since the last copy,
    and this worker's event-loop lag (``loop_lag``, the app's monitor) into its gauge."""

    def __init__(self, runtime: Runtime, loop_lag: LoopLagMonitor | None = None) -> None:
        self._runtime = runtime
        self._loop_lag = loop_lag
        self._seen: dict[tuple[str, ...], int] = {}

    def _advance(self, counter: Counter, labels: tuple[str, ...], value: int) -> None:
        key = (counter._name, *labels)
        delta = value - self._seen.get(key, 0)
        if delta > 0:
            (counter.labels(*labels) if labels else counter).inc(delta)
            self._seen[key] = value

    def sync(self, gauges: bool = True) -> None:
        """Copy the counts (and, with ``gauges``, the queue depth and file sizes, which read the
        open spool files: not after the runtime closed)."""
        runtime = self._runtime
        writer = runtime.exposures
        if writer is not None:
            for outcome, value in (
                ("written", writer.written),
                ("spooled", writer.spooled),
                ("replayed", writer.replayed),
                ("resent", writer.resent),
                ("lost", writer.dropped),
            ):
                self._advance(EXPOSURES, (outcome,), value)
            if gauges:
                EXPOSURES_PENDING.set(writer.pending)
                LOCAL_BYTES.labels("exposure_spool").set(writer.spool_bytes)
                LOCAL_BYTES.labels("journal").set(writer.journal_bytes)
        recorder = runtime.events
        if recorder is not None:
            self._advance(EVENTS, ("spooled",), recorder.spooled)
            self._advance(EVENTS, ("replayed",), recorder.replayed)
            self._advance(EVENTS, ("resent",), recorder.resent)
            if gauges:
                LOCAL_BYTES.labels("event_spool").set(recorder.spool_bytes)
        personalizer = runtime.personalizer
        if personalizer is not None:
            for labels, count in list(personalizer.decisions.items()):
                self._advance(DECISIONS, labels, count)
        aggregator = runtime.aggregator  # None with VARY_AGGREGATE off (`vary aggregate` runs it)
        if aggregator is not None:
            self._advance(AGGREGATOR_UNKNOWN_KINDS, (), aggregator.unknown_kinds)
        if gauges and self._loop_lag is not None:
            lag = self._loop_lag.snapshot()
            EVENT_LOOP_LAG.labels("p99").set(lag.p99_ms / 1000)
            EVENT_LOOP_LAG.labels("max").set(lag.max_ms / 1000)
        content = runtime.content.state
        self._advance(CONTENT_SYNCS, ("failed",), content.failed_syncs)
        self._advance(CONTENT_SYNCS, ("ok",), content.syncs - content.failed_syncs)


async def aggregator_backlog(redis: Redis, partitions: int) -> dict[str, tuple[int, int]]:
    """Per stream (``exposures``, ``events``), summed over partitions: entries the aggregator has
    not read yet (``XINFO GROUPS`` lag) and entries read but not acknowledged. A stream whose lag
    Redis cannot tell (or that does not exist yet, or Redis down) is left out."""
    from personalization.measurement.aggregation import DEFAULT_GROUP  # loaded by the runtime already

    found: dict[str, tuple[int, int]] = {}
    for name, base in (("exposures", keys.EXPOSURES), ("events", keys.EVENTS)):
        lag = pending = 0
        try:
            for partition in range(partitions):
                groups = await redis.xinfo_groups(keys.stream_name(base, partition, partitions))
                group = next((g for g in groups if _text(g.get("name")) == DEFAULT_GROUP), None)
                if group is None or group.get("lag") is None:
                    raise LookupError(name)
                lag += int(group["lag"])
                pending += int(group.get("pending") or 0)
        except Exception:  # noqa: BLE001 - a scrape reports what it can
            continue
        found[name] = (lag, pending)
    return found


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class StateCollector:
    """What the scraped worker's runtime is serving now: content age and version, model version,
    whether the profile circuit breaker is open; and the aggregator's backlog."""

    def __init__(self, runtime: Runtime, backlog: dict[str, tuple[int, int]] | None = None) -> None:
        self._runtime = runtime
        self._backlog = backlog or {}

    def collect(self) -> Iterator[Metric]:
        runtime = self._runtime
        content = runtime.content.state
        age = GaugeMetricFamily(
            "vary_content_age_seconds", "Seconds since the content snapshot being served was loaded (NaN: none)."
        )
        age.add_metric([], float("nan") if content.loaded_at is None else time.time() - content.loaded_at)
        yield age
        snapshot = content.snapshot
        info = InfoMetricFamily("vary_content", "The content snapshot being served.")
        info.add_metric([], {"version": snapshot.version if snapshot else "", "state": content.state})
        yield info
        model = InfoMetricFamily("vary_model", "The segment model being served.")
        model.add_metric([], {"version": str(runtime.model.version or "")})
        yield model
        breaker = GaugeMetricFamily(
            "vary_profile_breaker_open", "1 while profile reads are skipped after repeated failures."
        )
        breaker.add_metric([], 1.0 if runtime.profiles is not None and runtime.profiles.breaker_open else 0.0)
        yield breaker
        lag = GaugeMetricFamily(
            "vary_aggregator_lag_entries", "Stream entries the aggregator has not read yet.", labels=["stream"]
        )
        pending = GaugeMetricFamily(
            "vary_aggregator_pending_entries", "Stream entries read but not yet acknowledged.", labels=["stream"]
        )
        for stream, (behind, unacked) in sorted(self._backlog.items()):
            lag.add_metric([stream], behind)
            pending.add_metric([stream], unacked)
        yield lag
        yield pending
