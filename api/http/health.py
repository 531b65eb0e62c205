"""Operations routes (no key): liveness and readiness for load balancers and orchestrators.

``/ready`` answers anyone, so it shows the content source only by kind (``ExportFileSource``); the
full description, which for a file source is an absolute path on the server, only to a request
carrying an admin key (``Authorization: Bearer``). ``loop_lag`` (this worker's event-loop lag over
the last minute, api/loop_lag.py) is public: it says how busy the worker is, nothing about the data.
``redis_eviction_policy`` and ``redis_oom`` (personalization/store/memory.py) say whether Redis may
evict Vary's keys and whether it refuses writes for memory now.
"""

from __future__ import annotations

import asyncio
import time

from litestar import Request
from litestar.datastructures import State
from litestar.response import Response
from redis.asyncio import Redis

from api.http.auth import bearer_scope
from api.http.common import runtime_of
from api.http.handlers import get
from api.http.health_schemas import ContentSyncInfo, Health, Readiness
from personalization.measurement.ranges import iso_utc
from personalization.store.memory import MemoryState, memory_state

__all__ = ["health", "ready"]


async def _memory(redis: Redis) -> MemoryState | None:
    """Redis's eviction policy and whether it refuses writes for memory; ``None`` when it cannot say."""
    try:
        return await asyncio.wait_for(memory_state(redis), 1.0)
    except Exception:  # noqa: BLE001 - readiness reports; it never fails on a detail
        return None


@get("/health", tags=["operations"], summary="Liveness")
async def health() -> Health:
    return Health(status="ok")


@get("/ready", tags=["operations"], summary="Readiness: content, Redis and model")
async def ready(request: Request, state: State) -> Response[Readiness]:
    runtime = runtime_of(state)
    source = runtime.content.source
    shown_source = repr(source) if bearer_scope(request) == "admin" else type(source).__name__
    content = runtime.content.state
    snapshot = content.snapshot
    redis_ok = await runtime.redis_ok()
    memory = await _memory(runtime.redis) if redis_ok else None
    writer = runtime.exposures
    body = Readiness(
        ready=snapshot is not None and redis_ok,
        content=content.state,
        content_version=snapshot.version if snapshot else None,
        content_age_s=None if content.loaded_at is None else round(time.time() - content.loaded_at, 3),
        content_issues=len(snapshot.issues) if snapshot else 0,
        content_sync=ContentSyncInfo(
            source=shown_source,
            syncs=content.syncs,
            failed_syncs=content.failed_syncs,
            last_sync_at=content.last_sync_at,
            last_sync_at_iso=iso_utc(content.last_sync_at),
            last_sync_changes=content.last_sync_changes,
            last_error=content.error,
        ),
        redis="ok" if redis_ok else "unreachable",
        model=runtime.model.version,
        exposures_pending=writer.pending if writer else 0,
        exposures_written=writer.written if writer else 0,
        exposures_dropped=writer.dropped if writer else 0,
        exposures_spooled=writer.spooled if writer else 0,
        exposures_replayed=writer.replayed if writer else 0,
        exposures_resent=writer.resent if writer else 0,
        local_exposures_accepted=state.bundles.local_accepted,  # api/bundles.py
        local_exposures_rejected=dict(state.bundles.local_rejected),
        spool_bytes=writer.spool_bytes if writer else 0,
        events_spooled=runtime.events.spooled if runtime.events else 0,
        events_replayed=runtime.events.replayed if runtime.events else 0,
        events_resent=runtime.events.resent if runtime.events else 0,
        events_spool_depth=runtime.events.waiting if runtime.events else 0,
        events_spool_bytes=runtime.events.spool_bytes if runtime.events else 0,
        journal_bytes=writer.journal_bytes if writer else 0,
        decisions_degraded=runtime.personalizer.profile_failures if runtime.personalizer else 0,
        profile_breaker_open=runtime.profiles.breaker_open if runtime.profiles else False,
        redis_eviction_policy=memory.policy if memory else None,
        redis_oom=memory.oom if memory else False,
        loop_lag=monitor.snapshot() if (monitor := getattr(state, "loop_lag", None)) is not None else None,
    )
    return Response(body, status_code=200 if body.ready else 503)
