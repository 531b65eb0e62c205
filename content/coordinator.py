"""Keeping every worker's snapshot current, and the same.

Several Vary workers (processes, machines) serve one space. Each holds a compiled
:class:`~content.snapshot.ContentSnapshot` in memory; Redis holds the shared truth: the last good
content items, the sync token and the snapshot version (:class:`~content.store.ContentStore`).

* **One syncer at a time.** A sync (poll, webhook or start-up) takes a short Redis lock, asks the
  source for the changes since the stored token, applies them, saves items + token + version, and
  publishes the new version on ``vary:content:updates``.
* **Everyone follows.** Every worker subscribes; on a version it does not serve yet it loads the
  stored items and compiles them. Compilation is deterministic, so all workers end on the same
  version without each calling Contentful.
* **Last good content.** At start the stored items are served at once, before Contentful answers, so
  a restart while Contentful is down still serves (``state = "stale"`` until a sync succeeds). A
  failed sync keeps the current snapshot; the failure is logged and shown by ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from msgspec import Struct
from redis.asyncio import Redis

from content.compile import compile_snapshot
from content.experiences import ConditionValidator
from content.items import ContentItems
from content.retry import with_retries
from content.snapshot import ContentSnapshot
from content.sources import SyncingSource, SyncResult
from content.store import ContentStore
from content.errors import WebhookSignatureError
from content.webhooks import (
    SIGNATURE_HEADER,
    TOPIC_HEADER,
    is_content_change,
    parse_webhook,
    verify_request,
)

__all__ = [
    "ContentState",
    "ContentCoordinator",
    "WebhookOutcome",
    "UPDATES_CHANNEL",
    "SYNC_LOCK",
    "WEBHOOK_SEEN_PREFIX",
    "WEBHOOK_TTL_S",
]

log = logging.getLogger("vary.content")

UPDATES_CHANNEL = "vary:content:updates"
SYNC_LOCK = "vary:content:sync-lock"
#: ``vary:content:webhook-seen:<signature>``: a webhook call already accepted, kept while its signature
#: could still verify (Contentful sends no request id, so the signature is the request's identity).
WEBHOOK_SEEN_PREFIX = "vary:content:webhook-seen:"
#: How old (or how far ahead) a signed webhook call may be: Contentful's default time-to-live.
WEBHOOK_TTL_S = 30

_RELEASE = (Path(__file__).parent / "scripts" / "release_lock.lua").read_text()


class WebhookOutcome(Struct, frozen=True, kw_only=True):
    """What a verified webhook call did: its topic and entity, whether it resynced, and the content
    version served afterwards."""

    topic: str
    entity_id: str | None
    synced: bool
    content_version: str | None


@dataclass
class ContentState:
    """What this worker serves and how it got there (read by ``/ready``).

    ``state``: ``loading`` (nothing yet), ``fresh`` (the last sync succeeded), ``stale`` (serving
    stored or older content because the latest sync failed or has not happened), ``failed``
    (nothing to serve).
    """

    snapshot: ContentSnapshot | None = None
    items: ContentItems | None = None
    token: str | None = None
    loaded_at: float | None = None
    state: str = "loading"
    error: str | None = None
    last_sync_at: float | None = None
    last_sync_changes: int = 0
    syncs: int = 0
    failed_syncs: int = 0

    def swap(self, snapshot: ContentSnapshot, items: ContentItems, token: str | None) -> None:
        """Replace the served snapshot in one assignment: requests see the old or the new, never half."""
        self.snapshot = snapshot
        self.items = items
        self.token = token
        self.loaded_at = time.time()

    @property
    def version(self) -> str | None:
        snapshot = self.snapshot
        return snapshot.version if snapshot is not None else None


class ContentCoordinator:
    """Syncs, persists and shares content for one worker (see the module docstring)."""

    def __init__(
        self,
        source: SyncingSource,
        redis: Redis,
        state: ContentState | None = None,
        *,
        poll_interval_s: float = 30.0,
        link_depth: int = 2,
        lock_ttl_s: float = 60.0,
        retry_attempts: int = 4,
        store: ContentStore | None = None,
        compile: Callable[[ContentItems], ContentSnapshot] | None = None,
        plugin_types: frozenset[str] = frozenset(),
        validate_condition: ConditionValidator | None = None,
    ) -> None:
        self.source = source
        self.state = state or ContentState()
        self._redis = redis
        self._store = store or ContentStore(redis)
        self._poll_interval_s = poll_interval_s
        self._lock_ttl_ms = int(lock_ttl_s * 1000)
        self._attempts = retry_attempts
        self._compile = compile or (
            lambda items: compile_snapshot(
                items, link_depth=link_depth, plugin_types=plugin_types, validate_condition=validate_condition
            )
        )
        self._release = redis.register_script(_RELEASE)
        self._tasks: list[asyncio.Task[None]] = []
        self._local_lock = asyncio.Lock()

    # -- start and stop ------------------------------------------------------------------------

    async def start(self) -> None:
        """Serve the stored content at once, then sync, then follow polls and other workers."""
        await self._adopt_stored(reason="start")
        await self.sync_now(reason="start")
        self._tasks = [
            asyncio.create_task(self._follow(), name="vary-content-follow"),
        ]
        if self._poll_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._poll(), name="vary-content-poll"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # -- syncing -----------------------------------------------------------------------------

    async def sync_now(self, reason: str) -> str | None:
        """Pull changes under the shared lock; returns the version served afterwards."""
        async with self._local_lock:
            token = await self._acquire()
            if token is None:
                # Another worker is syncing; its result reaches us through the channel.
                log.info("content sync (%s) skipped: another worker holds the sync lock", reason)
                return self.state.version
            try:
                # The store may be ahead of us (another worker synced): start from its state.
                if await self._store.version() not in (None, self.state.version):
                    await self._adopt_stored(reason="catch up")
                result = await self._pull()
                if result is None:
                    return self.state.version
                await self._apply(result, reason)
            finally:
                await self._release(keys=[SYNC_LOCK], args=[token])
            return self.state.version

    async def _acquire(self) -> str | None:
        token = secrets.token_hex(8)
        deadline = time.monotonic() + min(5.0, self._lock_ttl_ms / 1000)
        while True:
            if await self._redis.set(SYNC_LOCK, token, nx=True, px=self._lock_ttl_ms):
                return token
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def _pull(self) -> SyncResult | None:
        state = self.state
        previous, since = state.items, state.token
        try:
            result: SyncResult = await anyio.to_thread.run_sync(
                lambda: with_retries(lambda: self.source.sync(previous, since), attempts=self._attempts)
            )
        except Exception as exc:
            state.failed_syncs += 1
            state.error = f"{type(exc).__name__}: {exc}"
            state.state = "stale" if state.snapshot is not None else "failed"
            log.error("content sync failed; serving %s: %s", state.version or "nothing", state.error)
            return None
        return result

    async def _apply(self, result: SyncResult, reason: str) -> None:
        state = self.state
        state.syncs += 1
        state.last_sync_at = time.time()
        state.last_sync_changes = result.changed
        state.error = None
        state.state = "fresh"
        if state.snapshot is not None and not result.full and result.changed == 0:
            state.token = result.token
            await self._store.save_token(result.token)
            return
        snapshot = await anyio.to_thread.run_sync(self._compile, result.items)
        await self._store.save(result.items, result.token, snapshot.version)
        previous = state.version
        state.swap(snapshot, result.items, result.token)
        if previous != snapshot.version:
            await self._redis.publish(UPDATES_CHANNEL, snapshot.version)
            self._log_swap(snapshot, reason, previous)

    async def apply_webhook(
        self,
        secret: str,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        now_ms: int | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> WebhookOutcome:
        """Verify a Contentful webhook call (``target``: the path and query as they arrived) and, when
        it changed published content, resync at once — other workers follow through the channel.

        Raises :class:`~content.errors.WebhookSignatureError` (not provably from Contentful, too
        old, its topic not signed, or an exact replay of a call already accepted) or
        :class:`~content.errors.WebhookPayloadError` (signed but unreadable) before anything
        changes. ``on_change`` runs before such a resync (the preview cache forgets its snapshot).

        Replays: a signed call stays verifiable for ``WEBHOOK_TTL_S`` either side of its timestamp,
        so its signature is remembered (``SET NX``) for twice that; the same signature again is
        refused. Only verified calls are remembered, so unsigned junk cannot fill Redis.
        """
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        verify_request(
            secret, method, target, dict(headers), body, now_ms=now_ms, ttl_s=WEBHOOK_TTL_S,
            require_signed=(TOPIC_HEADER,),
        )
        topic = next((value for name, value in headers.items() if name.lower() == TOPIC_HEADER), None)
        event = parse_webhook(topic, body)
        signature = next(value for name, value in headers.items() if name.lower() == SIGNATURE_HEADER)
        first = await self._redis.set(
            WEBHOOK_SEEN_PREFIX + signature.strip().lower(), "1", nx=True, ex=2 * WEBHOOK_TTL_S
        )
        if not first:
            raise WebhookSignatureError("this signed request was already received (a replay); refused")
        synced = is_content_change(event)
        if synced and on_change is not None:
            on_change()
        version = await self.sync_now(reason=f"webhook {event.topic}") if synced else self.state.version
        return WebhookOutcome(
            topic=event.topic, entity_id=event.entity_id, synced=synced, content_version=version
        )

    # -- following the others ----------------------------------------------------------------

    async def _adopt_stored(self, reason: str, fresh: bool = False) -> bool:
        """Serve what Redis holds, if it is not what we serve already.

        ``fresh``: the stored content comes from a sync that just succeeded elsewhere.
        """
        stored = await self._store.load()
        if stored is None or stored.version == self.state.version:
            return False
        try:
            snapshot = await anyio.to_thread.run_sync(self._compile, stored.items)
        except Exception as exc:  # stored items from an incompatible version: ignore them
            log.error("stored content could not be compiled (%s); ignoring it", exc)
            return False
        previous = self.state.version
        self.state.swap(snapshot, stored.items, stored.token)
        if fresh:
            self.state.state, self.state.error = "fresh", None
        elif self.state.state in ("loading", "failed"):
            self.state.state = "stale"  # until a sync succeeds
        self._log_swap(snapshot, reason, previous)
        return True

    async def _follow(self) -> None:
        """Swap to every version another worker publishes (reconnecting if Redis drops)."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(UPDATES_CHANNEL)
                # A version published while we were not listening: catch up once.
                await self._adopt_stored(reason="resubscribe")
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    version = message["data"]
                    version = version.decode() if isinstance(version, bytes) else str(version)
                    if version != self.state.version:
                        async with self._local_lock:
                            await self._adopt_stored(reason="another worker synced", fresh=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("content updates channel lost (%s); resubscribing in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval_s)
            try:
                await self.sync_now(reason="poll")
            except asyncio.CancelledError:
                raise
            except Exception:  # a Redis outage must not end polling
                log.exception("content poll failed")

    def _log_swap(self, snapshot: ContentSnapshot, reason: str, previous: str | None) -> None:
        log.info(
            "content %s → %s (%s): %d entries, %d experiences, %d issues",
            previous,
            snapshot.version,
            reason,
            len(snapshot.entries),
            len(snapshot.experiences),
            len(snapshot.issues),
        )
        for issue in snapshot.issues:
            log.warning("content issue in %s (%s): %s", issue.entry_id, issue.content_type, issue.problem)
