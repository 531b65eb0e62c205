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

from api.plugins import PLUGIN_SOURCE_PREFIX, Plugins, load_plugins
from api.settings import Settings
from content import ContentfulSource, ContentSnapshot, ExportFileSource, demo_space_path
from content.coordinator import ContentCoordinator, ContentState
from content.preview import PreviewCache, PreviewSource
from content.sources import SyncingSource
from personalization.measurement.aggregation import Aggregator
from personalization.measurement.events import EVENT_STREAM
from personalization.store.exposures import EXPOSURE_STREAM, ExposureWriter
from personalization.store.journal import Journal
from personalization.store.live_state import LiveStateFollower
from personalization.store.keys import SCHEMA_VERSION
from personalization.store.memory import warn_if_evicting
from personalization.store.migrate import migrate, schema_version
from personalization.store.partitions import all_streams
from personalization.store.retention import StreamRetention
from personalization.store.spool import Spool, orphaned_spools
from personalization.measurement.recorder import EventRecorder
from personalization.store.profiles import RedisProfileStore
from personalization.models.registry import SEGMENTS_SLOT, SHADOW_PREFIX, ModelRegistry, apply_shadow, shadow_slot
from personalization.models.files import ModelLoadError, read_model_files
from personalization.decision.audience_validate import validate_condition
from personalization.decision.surveys import watched_triggers
from personalization.decision.policy import CompiledRewardModel
from personalization.decision.scoring import ActiveModel, ActivePolicies
from personalization.decision.segments import CompiledSegmentModel
from personalization.decision.live_state import LiveState
from personalization.service import Personalizer
from personalization.types import Experience
from personalization.sinks import SinkRunner

__all__ = ["Runtime", "content_source_for", "preview_for", "ensure_model"]

log = logging.getLogger("vary")


def content_source_for(settings: Settings, plugins: Plugins | None = None) -> SyncingSource:
    """The export file (demo by default), the live Contentful space, or a plugin's source, as configured."""
    if settings.content_source and settings.content_source.startswith(PLUGIN_SOURCE_PREFIX):
        return (plugins or load_plugins()).content_source(settings.content_source)
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


def preview_for(settings: Settings, plugin_types: frozenset[str] = frozenset()) -> PreviewCache | None:
    """A preview cache when the live space and a Preview API token are configured.

    ``plugin_types``: the experience types the app's plugins add (valid besides the built-in ones)."""
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
    return PreviewCache(
        source, ttl_s=settings.preview_cache_s, link_depth=settings.content_link_depth,
        plugin_types=plugin_types, validate_condition=validate_condition,
    )


def ensure_model(settings: Settings) -> Path:
    """The model directory; trains the demo model there first if no model exists and that is allowed."""
    directory = Path(settings.data_dir) / "models"
    if settings.train_demo_model and not (directory / "active").exists():
        from personalization.demo.data import train_demo_model

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
    profiles: RedisProfileStore | None = None
    plugins: Plugins | None = None
    sinks: list[SinkRunner] = field(default_factory=list)
    #: Guardrail pauses and phases, refreshed in the background for the personalizer.
    live: LiveStateFollower | None = None

    @classmethod
    def create(
        cls, settings: Settings, redis: Redis, source: SyncingSource | None = None, plugins: Plugins | None = None
    ) -> Runtime:
        # The plugins' experience types are valid content (the app installed them before this).
        plugin_types = plugins.policy_types() if plugins is not None else frozenset()
        coordinator = ContentCoordinator(
            source or content_source_for(settings, plugins),
            redis,
            ContentState(),
            poll_interval_s=settings.content_poll_s,
            link_depth=settings.content_link_depth,
            plugin_types=plugin_types,
            validate_condition=validate_condition,
        )
        runtime = cls(
            settings=settings,
            redis=redis,
            content=coordinator,
            preview=preview_for(settings, plugin_types),
            plugins=plugins,
        )
        spool_dir = Path(settings.data_dir) / "spool"
        runtime.exposures = ExposureWriter(
            redis,
            queue_size=settings.exposure_queue_size,
            batch_size=settings.exposure_batch_size,
            spool=Spool(spool_dir / f"exposures-{os.getpid()}-{secrets.token_hex(4)}.spool", max_bytes=settings.spool_max_bytes),
            partitions=settings.stream_partitions,
            # What a request was answered with survives this worker being killed (replayed on start).
            journal=Journal(spool_dir, f"{os.getpid()}-{secrets.token_hex(4)}"),
        )
        runtime.events = EventRecorder(
            redis,
            partitions=settings.stream_partitions,
            spool=Spool(
                spool_dir / "events" / f"events-{os.getpid()}-{secrets.token_hex(4)}.spool",
                max_bytes=settings.spool_max_bytes,
                kind="events",
            ),
            # The survey triggers to note with the events (issue 24): the content's, read per batch.
            watched=lambda: (
                watched_triggers(runtime.snapshot.surveys.values()) if runtime.snapshot is not None else frozenset()
            ),
        )
        runtime.models = ModelRegistry(redis)
        runtime.profiles = RedisProfileStore(redis)
        runtime.personalizer = Personalizer(
            runtime.profiles,
            runtime.model,
            runtime.exposures,
            profile_timeout_s=settings.profile_timeout_s,
            policies=runtime.policies,
            # Plugins' attribute sources; without any, the decision path does not even look.
            attributes=plugins.attributes if plugins is not None and plugins.attributes else None,
            # Their extractors and experience types, handed to every decide().
            plugins=plugins.registry if plugins is not None else None,
            global_holdout=settings.global_holdout,
        )
        runtime.live = LiveStateFollower(
            redis,
            runtime._served_content,
            runtime._apply_live_state,
            global_holdout=settings.global_holdout,
            every_s=settings.state_refresh_s,
        )
        return runtime

    def _served_content(self) -> tuple[str, list[Experience]] | None:
        snapshot = self.snapshot
        return (snapshot.version, list(snapshot.experiences.values())) if snapshot is not None else None

    def _apply_live_state(self, state: LiveState) -> None:
        if self.personalizer is not None:
            self.personalizer.live = state

    async def refresh_live_state(self) -> None:
        """Read pauses (and the phases of a new snapshot) now, e.g. right after a resume."""
        assert self.live is not None
        await self.live.refresh()

    @property
    def snapshot(self) -> ContentSnapshot | None:
        return self.content.state.snapshot

    async def start(self) -> None:
        """Migrate stored data, load content and models (blocking work off the event loop), start the
        exposure writer."""
        await self._migrate()
        await warn_if_evicting(self.redis)  # an evicting maxmemory-policy corrupts results: say so at start
        await self.content.start()
        await self._start_live_state()
        await self._start_models()
        assert self.exposures is not None
        self.exposures.start()
        await self._replay_orphaned_spools()
        orphans_left = await self._replay_orphaned_event_spools()
        self._tasks.append(
            asyncio.create_task(self._replay_events_forever(orphans_left), name="vary-event-spool-replay")
        )
        if self.settings.aggregate:
            self._start_aggregator()
        if self.settings.sinks_in_process:
            await self._start_sinks()

    async def _start_live_state(self) -> None:
        """Pauses and phases before the first request (bounded: Redis down must not stop the start),
        then refreshed every ``VARY_STATE_REFRESH_S``."""
        assert self.live is not None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.live.refresh(), 2.0)
        self._tasks.append(asyncio.create_task(self.live.run_forever(self._stop), name="vary-live-state"))

    async def _migrate(self) -> None:
        """Stored data to the current schema (``personalization/store/migrate.py``) before anything is
        served: one ``GET`` once done. Redis unreachable now: retried in the background until done."""
        try:
            if await asyncio.wait_for(schema_version(self.redis), 2.0) < SCHEMA_VERSION:
                await migrate(self.redis)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("stored-data migration postponed (%s); retrying in the background", exc)

        async def until_done() -> None:
            while not self._stop.is_set():
                try:
                    await migrate(self.redis)
                    return
                except Exception as exc:
                    log.warning("stored-data migration failed (%s); retrying in 5 s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)

        self._tasks.append(asyncio.create_task(until_done(), name="vary-migrate"))

    def _start_aggregator(self) -> None:
        """The measurement consumer, in-process (``vary aggregate`` runs the same thing alone)."""
        from personalization.measurement.aggregation import Aggregator
        from personalization.measurement.goals import MAX_CONVERSIONS_PER_MINUTE, goal_policy_of

        self.aggregator = Aggregator(
            self.redis,
            consumer=f"{socket.gethostname()}-{os.getpid()}-{id(self):x}",
            partitions=self.settings.stream_partitions,
            claim_idle_ms=self.settings.aggregate_claim_idle_ms,
            # Results integrity (#17): only the goals content configures, plausibility limits on.
            goal_policy=lambda: goal_policy_of(self.snapshot),
            max_conversions_per_minute=MAX_CONVERSIONS_PER_MINUTE,
        )

        async def run() -> None:
            assert self.aggregator is not None
            try:
                await self.aggregator.ensure_groups()
                await self.aggregator.run_forever(self._stop, claim_every_s=self.settings.aggregate_claim_every_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the in-process aggregator stopped; results will lag until restart")

        self._tasks.append(asyncio.create_task(run(), name="vary-aggregate"))
        # Guardrails are tested where the counts are fresh (``vary aggregate`` runs the same loop).
        from personalization.measurement.guardrail_monitor import GuardrailMonitor

        guardrails = GuardrailMonitor(
            self.redis, lambda: self.snapshot.experiences.values() if self.snapshot is not None else (),
            every_s=self.settings.guardrail_check_s, alpha=self.settings.guardrail_alpha,
            min_sample=self.settings.guardrail_min_sample,
        )
        self._tasks.append(asyncio.create_task(guardrails.run_forever(self._stop), name="vary-guardrails"))
        retention = stream_retention(self.settings, self.redis)
        if retention is not None:
            self._tasks.append(asyncio.create_task(retention.run_forever(self._stop), name="vary-stream-retention"))

    async def _start_sinks(self) -> None:
        """Sink runners in-process (``vary sinks`` runs the same alone): off the request path, each
        reads the streams with its own consumer group; a failing sink only logs."""
        plugins = self.plugins or Plugins([])
        consumer = f"{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.sinks = plugins.sink_runners(self.settings, self.redis, consumer)
        for runner in self.sinks:
            try:
                await runner.ensure_groups()
            except Exception as exc:
                log.error("sink %s: consumer groups not created (%s); it retries in its loop", runner.sink.name, exc)

            async def run(runner: SinkRunner = runner) -> None:
                try:
                    await runner.run_forever(self._stop)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sink %s stopped; its entries wait in Redis until a runner restarts", runner.sink.name)

            self._tasks.append(asyncio.create_task(run(), name=f"vary-sink-{runner.sink.name}"))

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

    async def _replay_orphaned_event_spools(self) -> bool:
        """Events a stopped or killed worker spooled are written now (idempotent by event id);
        ``True`` when some could not be written yet (the replay loop tries again)."""
        assert self.events is not None
        left = False
        for spool in orphaned_spools(Path(self.settings.data_dir) / "spool" / "events"):
            try:
                await self.events.replay(spool)
            except Exception as exc:  # noqa: BLE001 - Redis not back yet: keep the file
                left = True
                log.warning("could not replay %s yet (%s); it is kept", spool.path.name, exc)
            finally:
                spool.close()
        return left

    async def _replay_events_forever(self, orphans_left: bool) -> None:
        """Our own events spool whenever Redis answers; other workers' leftovers until written."""
        assert self.events is not None
        own = asyncio.create_task(self.events.replay_forever(self._stop), name="vary-event-spool-own")
        try:
            while orphans_left and not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 5.0)
                orphans_left = await self._replay_orphaned_event_spools()
            await own
        finally:
            own.cancel()

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
                    await self.models.register(data, card, if_absent=True)  # another worker may have seeded it
                    await self.models.activate(version)
            await self._load_active()
        except Exception as exc:
            log.error("models not loaded (%s): serving rule audiences only until one is activated", exc)
        self._tasks.append(asyncio.create_task(self.models.follow(self.switch_model), name="vary-models-follow"))

    async def _load_active(self) -> None:
        assert self.models is not None
        for slot, version in (await self.models.active_versions()).items():
            await self.switch_model(slot, version)
        for experience, version in (await self.models.shadows()).items():
            await self.switch_model(shadow_slot(experience), version)

    async def switch_model(self, slot: str, version: str) -> None:
        """Build the new model first, then swap the reference (no request ever sees no model)."""
        assert self.models is not None
        if slot.startswith(SHADOW_PREFIX):  # a candidate in shadow (docs/models.md): logged, not served
            await apply_shadow(self.models, self.policies, slot, version)
            return
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
        # Bounded: redis-py can swallow a cancellation that lands inside a command (the task then runs
        # on until it next checks the stop event), and shutdown must not wait on that forever.
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=10)
            for task in done:
                if not task.cancelled():
                    task.exception()  # retrieved: how a task ended at shutdown is not news
            for task in pending:
                log.error("background task %s did not stop within 10 s", task.get_name())
        if self.aggregator is not None:
            await hand_back_at_shutdown(self.aggregator)
        await self.content.close()
        for runner in self.sinks:
            await runner.aclose()
        if self.exposures is not None:
            await self.exposures.close()
        if self.events is not None:
            self.events.close()
        await self.redis.aclose()

    async def redis_ok(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except Exception:
            return False


def stream_retention(settings: Settings, redis: Redis) -> StreamRetention | None:
    """The stream trimmer for ``settings`` (every exposure and event partition), or ``None`` when
    ``VARY_STREAM_RETENTION_DAYS`` is 0 (keep everything)."""
    if settings.stream_retention_days <= 0:
        return None
    streams = all_streams(EXPOSURE_STREAM, settings.stream_partitions) + all_streams(
        EVENT_STREAM, settings.stream_partitions
    )
    return StreamRetention(
        redis, streams, retention_s=settings.stream_retention_days * 86_400, every_s=settings.stream_trim_every_s
    )


async def hand_back_at_shutdown(aggregator: Aggregator) -> None:
    """The stopping consumer's unacknowledged entries, handed back for the next one to claim at once
    (:meth:`~personalization.measurement.aggregation.Aggregator.hand_back`); bounded, and a Redis
    that does not answer only leaves them to be claimed ``claim_idle_ms`` later, as after a crash."""
    try:
        await asyncio.wait_for(aggregator.hand_back(), 2.0)
    except Exception as exc:  # noqa: BLE001 - shutdown goes on; the entries stay claimable later
        log.warning("aggregation entries not handed back at shutdown (%s): claimed after the idle time", exc)
