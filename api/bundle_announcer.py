"""Each worker watches its served bundle version and announces a change to the bundle webhook.

Runs only with ``VARY_BUNDLE_WEBHOOK_URL`` set. Detection is the same as ``GET /v1/bundle/events``
(:meth:`api.bundles.BundleService.state`, polled); deduplication across workers and delivery (retries,
dead letters) are :mod:`personalization.sinks.bundle_versions`. Both tasks stop with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from api.bundles import BundleService
from api.runtime import Runtime
from api.settings import Settings
from personalization.sinks.bundle_versions import (
    BundleVersionNotice,
    BundleVersionRunner,
    BundleWebhookSink,
    announce_bundle_version,
)

__all__ = ["BundleAnnouncer"]

log = logging.getLogger("vary.bundle")


class BundleAnnouncer:
    """The watch loop and the delivery runner of one worker."""

    def __init__(self, settings: Settings, runtime: Runtime, bundles: BundleService) -> None:
        assert settings.bundle_webhook_url and settings.bundle_webhook_secret
        self.runtime = runtime
        self.bundles = bundles
        # As often as the live state (pauses) is refreshed, at most every second, as the event stream.
        self.poll_s = min(settings.state_refresh_s, 1.0)
        self.runner = BundleVersionRunner(
            runtime.redis,
            BundleWebhookSink(settings.bundle_webhook_url, settings.bundle_webhook_secret),
            consumer=f"{socket.gethostname()}-{os.getpid()}-{id(self):x}",
            max_attempts=settings.sink_max_attempts,
            backoff_s=settings.sink_backoff_s,
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        with contextlib.suppress(Exception):  # Redis down: the runner creates the group in its loop
            await self.runner.ensure_groups()
        self._tasks = [
            asyncio.create_task(self._watch(), name="vary-bundle-watch"),
            asyncio.create_task(self.runner.run_forever(self._stop), name="vary-sink-bundle-webhook"),
        ]

    async def _watch(self) -> None:
        last: str | None = None
        while not self._stop.is_set():
            try:
                bundle = self.bundles.state(self.runtime, time.time()).bundle
                if bundle.version != last:
                    notice = BundleVersionNotice(version=bundle.version, content_version=bundle.content_version)
                    await announce_bundle_version(self.runtime.redis, notice, changed=last is not None)
                    last = bundle.version
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - no content yet, a server-only model, Redis down: retried
                log.debug("bundle version not announced (%s); retrying", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._stop.wait()

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.runner.aclose()
