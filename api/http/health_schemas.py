"""``/health`` and ``/ready`` payloads: what a load balancer and an operator read about one worker.

Kept apart from :mod:`api.http.schemas` (the delivery and admin payloads) because ``Readiness`` alone
is one counter per failure mode ``docs/operations.md`` describes, and grows with them.
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from api.loop_lag import LoopLag

__all__ = ["ContentSyncInfo", "Health", "Readiness"]


class Health(Struct, frozen=True):
    status: Annotated[str, Meta(description="Always `ok`: the process answers.")]


class ContentSyncInfo(Struct, frozen=True, kw_only=True):
    """How this worker's content got here: syncs done, the last one's time and changes, the last error."""

    source: Annotated[
        str, Meta(description="Where the content comes from (the Contentful space, a file, the demo space).")
    ]
    syncs: Annotated[int, Meta(description="Successful syncs since this worker started.")]
    failed_syncs: Annotated[int, Meta(description="Failed syncs since this worker started.")]
    last_sync_at: (
        Annotated[
            float,
            Meta(
                description="When the last sync finished, Unix seconds; null before the first (read `last_sync_at_iso`)."
            ),
        ]
        | None
    )
    last_sync_at_iso: (
        Annotated[str, Meta(description="`last_sync_at` in ISO 8601 UTC (the epoch field stays for one release).")]
        | None
    ) = None
    last_sync_changes: Annotated[int, Meta(description="Entries and assets the last sync changed.")]
    last_error: Annotated[str, Meta(description="The last sync error, in words; null without one.")] | None


class Readiness(Struct, frozen=True, kw_only=True):
    ready: Annotated[bool, Meta(description="True when content is loaded and Redis reachable: send traffic.")]
    content: Annotated[
        str,
        Meta(description="`fresh` (last sync succeeded), `stale` (serving stored/older content), `loading`, `failed`."),
    ]
    content_version: Annotated[str, Meta(description="The content snapshot served; null before the first load.")] | None
    content_age_s: (
        Annotated[float, Meta(description="Seconds since this worker swapped to the served snapshot.")] | None
    )
    content_issues: Annotated[
        int, Meta(description="Experiences and audiences the sync could not use (`GET /v1/content/issues`).")
    ]
    content_sync: Annotated[ContentSyncInfo, Meta(description="How this worker's content got here.")]
    redis: Annotated[str, Meta(description="`ok` or `unreachable`.")]
    model: Annotated[str, Meta(description="The active segment model's version; null without one.")] | None
    exposures_pending: Annotated[int, Meta(description="Exposures queued in this worker, not yet written.")]
    exposures_written: Annotated[int, Meta(description="Exposures this worker wrote to Redis.")]
    exposures_dropped: Annotated[
        int, Meta(description="Exposures this worker lost (queue full and spool unavailable).")
    ]
    exposures_spooled: Annotated[
        int, Meta(description="Exposures kept in the local spool while Redis was unreachable, and replayed since.")
    ] = 0
    exposures_replayed: Annotated[int, Meta(description="Spooled exposures written to Redis since it came back.")] = 0
    exposures_resent: Annotated[
        int,
        Meta(
            description="Acknowledged exposures a restarted Redis had lost (written back before it persisted them) "
            "and this worker wrote again."
        ),
    ] = 0
    local_exposures_accepted: Annotated[
        int,
        Meta(
            description="Locally made decisions (`POST /v1/exposures` `decisions`) this worker recomputed from their bundle and recorded."
        ),
    ] = 0
    local_exposures_rejected: Annotated[
        dict[str, int],
        Meta(
            description="Local decisions this worker rejected, by kind: `inconsistent` (variant or propensity differ from the bundle's), `stale`, `future`, `unknown_version`, `entry` (server-only entry)."
        ),
    ] = {}
    spool_bytes: Annotated[int, Meta(description="Size of this worker's exposure spool file.")] = 0
    events_spooled: Annotated[
        int,
        Meta(
            description="Events spooled while Redis was unreachable and replayed since (this worker), events waiting in its spool now, and the spool file's size."
        ),
    ] = 0
    events_replayed: Annotated[
        int, Meta(description="Spooled events written to Redis since it came back (this worker).")
    ] = 0
    events_resent: Annotated[
        int, Meta(description="Written events a restarted Redis had lost and this worker wrote again.")
    ] = 0
    events_spool_depth: Annotated[int, Meta(description="Events waiting in this worker's spool now.")] = 0
    events_spool_bytes: Annotated[int, Meta(description="Size of this worker's event spool file.")] = 0
    journal_bytes: Annotated[
        int,
        Meta(
            description="Bytes in this worker's exposure journal (accepted exposures not yet known to be in Redis or the spool; what a replay would recover if the worker were killed now)."
        ),
    ] = 0
    decisions_degraded: Annotated[
        int, Meta(description="Decisions this worker made without the visitor's profile (Redis slow, stalled or down).")
    ] = 0
    profile_breaker_open: Annotated[
        bool,
        Meta(
            description="True while profile reads are refused at once (Redis stalled or unreachable; a probe is out)."
        ),
    ] = False
    loop_lag: (
        Annotated[
            LoopLag,
            Meta(
                description="How late this worker's event loop woke up over the last minute (api/loop_lag.py); null before the app started."
            ),
        ]
        | None
    ) = None
    redis_eviction_policy: (
        Annotated[
            str,
            Meta(
                description="Redis's `maxmemory-policy` (null when Redis cannot be asked). Anything but `noeviction` lets a full Redis drop assignments and counters: results silently wrong (docs/scaling.md)."
            ),
        ]
        | None
    ) = None
    redis_oom: Annotated[
        bool,
        Meta(
            description="True when Redis refuses writes for memory (used memory past `maxmemory`): exposures and events are being spooled locally until there is room."
        ),
    ] = False
