"""The running parts of one Vary worker, opened in the app's lifespan and closed in ``finally``.

:class:`Runtime` wires the domain objects together from :class:`~api.settings.Settings`: the Redis
client, the compiled content snapshot, the active segment model, the exposure writer, the event
recorder and the personalizer. Controllers reach it through ``app.state.runtime`` and only call it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from redis.asyncio import Redis

from api.settings import Settings
from content import (
    ContentfulSource,
    ContentSnapshot,
    ContentSource,
    ExportFileSource,
    compile_snapshot,
    demo_space_path,
)
from personalization.exposures import ExposureWriter
from personalization.measurement import EventRecorder
from personalization.profiles import RedisProfileStore
from personalization.scoring import ActiveModel, load_active_model
from personalization.segment_model import SegmentModel
from personalization.service import Personalizer

__all__ = ["ContentState", "Runtime", "content_source_for", "ensure_model"]

log = logging.getLogger("vary")


def content_source_for(settings: Settings) -> ContentSource:
    """The export file (demo by default) or the live Contentful space, as configured."""
    if settings.content_source == "contentful":
        assert settings.contentful_space_id and settings.contentful_access_token
        return ContentfulSource(
            space_id=settings.contentful_space_id,
            access_token=settings.contentful_access_token,
            environment=settings.contentful_environment,
            api_url=settings.contentful_api_url,
            https=settings.contentful_https,
        )
    path = Path(settings.content_source) if settings.content_source else demo_space_path()
    return ExportFileSource(path)


def ensure_model(settings: Settings) -> Path:
    """The model directory; trains the demo model there first if no model exists and that is allowed."""
    directory = Path(settings.data_dir) / "models"
    if settings.train_demo_model and not (directory / "active").exists():
        from personalization.demo_data import train_demo_model

        directory.mkdir(parents=True, exist_ok=True)
        card = train_demo_model(directory)
        log.info("trained the demo segment model %s (segments: %s)", card.version, ", ".join(card.segments))
    return directory


@dataclass
class ContentState:
    """The snapshot being served and how it got there (for ``/ready``)."""

    snapshot: ContentSnapshot | None = None
    loaded_at: float | None = None
    state: str = "loading"
    error: str | None = None

    def swap(self, snapshot: ContentSnapshot) -> None:
        """Replace the served snapshot in one assignment: requests see the old or the new, never half."""
        self.snapshot = snapshot
        self.loaded_at = time.time()
        self.state = "fresh"
        self.error = None


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    source: ContentSource
    content: ContentState = field(default_factory=ContentState)
    model: ActiveModel = field(default_factory=ActiveModel)
    exposures: ExposureWriter | None = None
    events: EventRecorder | None = None
    personalizer: Personalizer | None = None

    @classmethod
    def create(cls, settings: Settings, redis: Redis, source: ContentSource | None = None) -> Runtime:
        runtime = cls(settings=settings, redis=redis, source=source or content_source_for(settings))
        runtime.exposures = ExposureWriter(
            redis, queue_size=settings.exposure_queue_size, batch_size=settings.exposure_batch_size
        )
        runtime.events = EventRecorder(redis)
        runtime.personalizer = Personalizer(
            RedisProfileStore(redis),
            runtime.model,
            runtime.exposures,
            profile_timeout_s=settings.profile_timeout_s,
        )
        return runtime

    async def start(self) -> None:
        """Load content and the model (off the event loop: both block), start the exposure writer."""
        await self.reload_content()
        directory = await anyio.to_thread.run_sync(ensure_model, self.settings)
        model: SegmentModel | None = await anyio.to_thread.run_sync(load_active_model, directory)
        self.model.activate(model)
        assert self.exposures is not None
        self.exposures.start()

    async def reload_content(self) -> None:
        """Pull and compile the content; a failure keeps the last good snapshot and is reported."""
        try:
            items = await anyio.to_thread.run_sync(self.source.load)
            snapshot = await anyio.to_thread.run_sync(compile_snapshot, items)
        except Exception as exc:
            self.content.error = f"{type(exc).__name__}: {exc}"
            self.content.state = "stale" if self.content.snapshot is not None else "failed"
            log.error("content load failed, keeping the last good snapshot: %s", self.content.error)
            return
        self.content.swap(snapshot)
        for issue in snapshot.issues:
            log.warning("content issue in %s (%s): %s", issue.entry_id, issue.content_type, issue.problem)
        log.info(
            "content snapshot %s: %d entries, %d experiences, %d issues",
            snapshot.version,
            len(snapshot.entries),
            len(snapshot.experiences),
            len(snapshot.issues),
        )

    async def close(self) -> None:
        if self.exposures is not None:
            await self.exposures.close()
        await self.redis.aclose()

    async def redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False
