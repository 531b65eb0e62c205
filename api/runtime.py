"""The running parts of one Vary worker, opened in the app's lifespan and closed in ``finally``.

:class:`Runtime` wires the domain objects together from :class:`~api.settings.Settings`: the Redis
client, the content coordinator (sync, persistence, pub/sub), the optional preview cache, the active
segment model, the exposure writer, the event recorder and the personalizer. Controllers reach it
through ``app.state.runtime`` and only call it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

import anyio.to_thread
from redis.asyncio import Redis

from api.settings import Settings
from content import ContentfulSource, ContentSnapshot, ExportFileSource, demo_space_path
from content.coordinator import ContentCoordinator, ContentState
from content.preview import PreviewCache, PreviewSource
from content.sources import SyncingSource
from personalization.aggregation import Aggregator
from personalization.exposures import ExposureWriter
from personalization.spool import Spool, orphaned_spools
from personalization.measurement import EventRecorder
from personalization.profiles import RedisProfileStore
from personalization.model_registry import SEGMENTS_SLOT, ModelRegistry
from personalization.model_files import ModelLoadError, read_model_files
from personalization.policy import CompiledRewardModel
from personalization.scoring import ActiveModel, ActivePolicies
from personalization.segment_model import CompiledSegmentModel
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
    policies: ActivePolicies = field(default_factory=ActivePolicies)
    models: ModelRegistry | None = None
    aggregator: Aggregator | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
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
        spool_dir = Path(settings.data_dir) / "spool"
        runtime.exposures = ExposureWriter(
            redis,
            queue_size=settings.exposure_queue_size,
            batch_size=settings.exposure_batch_size,
            spool=Spool(spool_dir / f"exposures-{os.getpid()}-{secrets.token_hex(4)}.spool", max_bytes=settings.spool_max_bytes),
        )
        runtime.events = EventRecorder(redis)
        runtime.models = ModelRegistry(redis)
        runtime.personalizer = Personalizer(
            RedisProfileStore(redis),
            runtime.model,
            runtime.exposures,
            profile_timeout_s=settings.profile_timeout_s,
            policies=runtime.policies,
        )
        return runtime

    @property
    def snapshot(self) -> ContentSnapshot | None:
        return self.content.state.snapshot

    async def start(self) -> None:
        """Load content and models (blocking work off the event loop), start the exposure writer."""
        await self.content.start()
        await self._start_models()
        assert self.exposures is not None
        self.exposures.start()
        await self._replay_orphaned_spools()
        if self.settings.aggregate:
            self._start_aggregator()

    def _start_aggregator(self) -> None:
        """The measurement consumer, in-process (``vary aggregate`` runs the same thing alone)."""
        from personalization.aggregation import Aggregator

        self.aggregator = Aggregator(self.redis, consumer=f"{socket.gethostname()}-{os.getpid()}-{id(self):x}")

        async def run() -> None:
            assert self.aggregator is not None
            try:
                await self.aggregator.ensure_groups()
                await self.aggregator.run_forever(self._stop)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the in-process aggregator stopped; results will lag until restart")

        self._tasks.append(asyncio.create_task(run(), name="vary-aggregate"))

    async def _replay_orphaned_spools(self) -> None:
        """Exposures a killed worker spooled are written now, exactly once (batch markers)."""
        assert self.exposures is not None
        directory = Path(self.settings.data_dir) / "spool"
        for spool in orphaned_spools(directory):
            try:
                replayed = await self.exposures.replay(spool)
                log.info("replayed %d exposures from %s", replayed, spool.path.name)
            except Exception as exc:
                log.warning("could not replay %s yet (%s); it is kept", spool.path.name, exc)
            finally:
                spool.close()

    async def _start_models(self) -> None:
        """Serve the registry's active models; seed it from the local model directory when empty.

        A model that fails to load is logged and skipped: the previous one (or rule audiences only,
        with no segment model at all) keeps serving.
        """
        assert self.models is not None
        try:
            active = await self.models.active_versions()
            if SEGMENTS_SLOT not in active:
                directory = await anyio.to_thread.run_sync(ensure_model, self.settings)
                if (directory / "active").exists():
                    version, card, data, _ = await anyio.to_thread.run_sync(read_model_files, directory, None)
                    await self.models.register(data, card)
                    await self.models.activate(version)
            await self._load_active()
        except Exception as exc:
            log.error("models not loaded (%s): serving rule audiences only until one is activated", exc)
        self._tasks.append(asyncio.create_task(self.models.follow(self.switch_model), name="vary-models-follow"))

    async def _load_active(self) -> None:
        assert self.models is not None
        for slot, version in (await self.models.active_versions()).items():
            await self.switch_model(slot, version)

    async def switch_model(self, slot: str, version: str) -> None:
        """Build the new model first, then swap the reference (no request ever sees no model)."""
        assert self.models is not None
        if slot == SEGMENTS_SLOT and self.model.version == version:
            return
        experience = slot.removeprefix("policy:")
        current = self.policies.current.get(experience)
        if slot != SEGMENTS_SLOT and current is not None and current.version == version:
            return
        try:
            model = await self.models.load(version)
        except ModelLoadError as exc:
            log.error("model %s not activated here: %s; the previous one keeps serving", version, exc)
            return
        if isinstance(model, CompiledSegmentModel):
            self.model.activate(model)
        elif isinstance(model, CompiledRewardModel):
            self.policies.activate(experience, model)

    async def preview_snapshot(self) -> ContentSnapshot:
        """Drafts, compiled and cached briefly (raises ``ContentSourceError`` when Contentful fails)."""
        assert self.preview is not None
        return await anyio.to_thread.run_sync(self.preview.get)

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.content.close()
        if self.exposures is not None:
            await self.exposures.close()
        await self.redis.aclose()

    async def redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False
