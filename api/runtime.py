"""The running parts of one Vary worker, opened in the app's lifespan and closed in ``finally``.

:class:`Runtime` wires the domain objects together from :class:`~api.settings.Settings`: the Redis
client, the content coordinator (sync, persistence, pub/sub), the optional preview cache, the active
segment model, the exposure writer, the event recorder and the personalizer. Controllers reach it
through ``app.state.runtime`` and only call it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from redis.asyncio import Redis

from api.settings import Settings
from content import ContentfulSource, ContentSnapshot, ExportFileSource, demo_space_path
from content.coordinator import ContentCoordinator, ContentState
from content.preview import PreviewCache, PreviewSource
from content.sources import SyncingSource
from personalization.exposures import ExposureWriter
from personalization.measurement import EventRecorder
from personalization.profiles import RedisProfileStore
from personalization.scoring import ActiveModel, load_active_model
from personalization.segment_model import SegmentModel
from personalization.service import Personalizer

__all__ = ["Runtime", "content_source_for", "preview_for", "ensure_model"]

log = logging.getLogger("vary")


def content_source_for(settings: Settings) -> SyncingSource:
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


def preview_for(settings: Settings) -> PreviewCache | None:
    """A preview cache when the live space and a Preview API token are configured."""
    if settings.content_source != "contentful" or not settings.contentful_preview_token:
        return None
    assert settings.contentful_space_id
    source = PreviewSource(
        space_id=settings.contentful_space_id,
        preview_token=settings.contentful_preview_token,
        environment=settings.contentful_environment,
        api_url=settings.contentful_preview_api_url,
        https=settings.contentful_https,
    )
    return PreviewCache(source, ttl_s=settings.preview_cache_s, link_depth=settings.content_link_depth)


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
class Runtime:
    settings: Settings
    redis: Redis
    content: ContentCoordinator
    preview: PreviewCache | None = None
    model: ActiveModel = field(default_factory=ActiveModel)
    exposures: ExposureWriter | None = None
    events: EventRecorder | None = None
    personalizer: Personalizer | None = None

    @classmethod
    def create(cls, settings: Settings, redis: Redis, source: SyncingSource | None = None) -> Runtime:
        coordinator = ContentCoordinator(
            source or content_source_for(settings),
            redis,
            ContentState(),
            poll_interval_s=settings.content_poll_s,
            link_depth=settings.content_link_depth,
        )
        runtime = cls(settings=settings, redis=redis, content=coordinator, preview=preview_for(settings))
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

    @property
    def snapshot(self) -> ContentSnapshot | None:
        return self.content.state.snapshot

    async def start(self) -> None:
        """Load content and the model (off the event loop: both block), start the exposure writer."""
        await self.content.start()
        directory = await anyio.to_thread.run_sync(ensure_model, self.settings)
        model: SegmentModel | None = await anyio.to_thread.run_sync(load_active_model, directory)
        self.model.activate(model)
        assert self.exposures is not None
        self.exposures.start()

    async def preview_snapshot(self) -> ContentSnapshot:
        """Drafts, compiled and cached briefly (raises ``ContentSourceError`` when Contentful fails)."""
        assert self.preview is not None
        return await anyio.to_thread.run_sync(self.preview.get)

    async def close(self) -> None:
        await self.content.close()
        if self.exposures is not None:
            await self.exposures.close()
        await self.redis.aclose()

    async def redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False
