"""The model registry: every segment and policy model version in Redis, one active per slot.

Workers share models through Redis so that activating or rolling back one is a single call that every
worker follows within a moment, with nothing to copy between machines:

=====================================  ===============================================================
``vary:models:file:<version>``         the skops bytes
``vary:models:card:<version>``         the card (msgspec JSON): :class:`ModelCard` or :class:`PolicyCard`
``vary:models:index``                  sorted set of versions by ``created_at``
``vary:models:active``                 hash: slot → version (``segments``, ``policy:<experience>``)
``vary:models:updates`` (channel)      ``<slot> <version>`` after every activation
``vary:models:shadow``                 hash: experience → the policy version in shadow beside the live one
=====================================  ===============================================================

Shadow mode (:mod:`personalization.decision.shadow`) rides the same channel: ``shadow:<experience>
<version>`` when a candidate starts running in shadow, ``shadow:<experience> -`` when it stops;
:func:`apply_shadow` is what a worker does with such a message.

A version is checked before it is stored (its shape, :mod:`personalization.models.versions`; then the
same bounds, trusted-types and scikit-learn-version checks as a file on disk), so what the registry
holds always loads. A version is registered once: its card key is claimed with ``SET NX`` before the
file is written, so of two uploads of one version exactly one wins and the other is refused
(:class:`~personalization.errors.ModelVersionExists`, a 409) — a card is never silently replaced.
Workers build the compiled scorer first and then swap one reference, so a request is served by the
old model or the new one, never by neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio.to_thread
import msgspec
from redis.asyncio import Redis

from personalization.errors import InvalidInput, ModelVersionExists, Problem
from personalization.models.files import ModelLoadError
from personalization.decision.policy import CompiledRewardModel
from personalization.decision.segments import CompiledSegmentModel
from personalization.models.policy import PolicyCard, compile_policy
from personalization.models.policy import TRUSTED_TYPES as POLICY_TYPES
from personalization.models.segment_model import ModelCard, compile_model, load_model_bytes
from personalization.models.files import check_sklearn_version, load_trusted
from personalization.models.versions import check_version
from personalization.store.keys import (
    MODELS_ACTIVE_KEY,
    MODELS_CARD_PREFIX,
    MODELS_FILE_PREFIX,
    MODELS_INDEX_KEY,
    MODELS_SHADOW_KEY,
    MODELS_UPDATES_CHANNEL,
)

__all__ = [
    "ModelRegistry",
    "RegisteredModel",
    "UnknownModelVersion",
    "SEGMENTS_SLOT",
    "SHADOW_PREFIX",
    "UPDATES_CHANNEL",
    "apply_shadow",
    "policy_slot",
    "shadow_slot",
]

log = logging.getLogger("vary.models")

SEGMENTS_SLOT = "segments"
UPDATES_CHANNEL = MODELS_UPDATES_CHANNEL
_FILE = MODELS_FILE_PREFIX
_CARD = MODELS_CARD_PREFIX
_INDEX = MODELS_INDEX_KEY
_ACTIVE = MODELS_ACTIVE_KEY


#: Slots of shadow policies on the updates channel (never in the active hash): ``shadow:<experience>``.
SHADOW_PREFIX = "shadow:"
#: The version a ``shadow:<experience>`` message carries when the shadow stops.
_NO_SHADOW = "-"


def policy_slot(experience: str) -> str:
    return f"policy:{experience}"


def shadow_slot(experience: str) -> str:
    return f"{SHADOW_PREFIX}{experience}"


class UnknownModelVersion(KeyError):
    """No model with that version is registered."""


class RegisteredModel(msgspec.Struct, frozen=True, kw_only=True):
    """One registered version: which slot it fills and its card."""

    version: str
    slot: str
    card: ModelCard | PolicyCard


def _decode_card(raw: bytes) -> ModelCard | PolicyCard:
    """A card of either kind; a policy card names its experience, a segment card its segments."""
    try:
        return msgspec.json.decode(raw, type=ModelCard)
    except msgspec.ValidationError:
        pass
    try:
        return msgspec.json.decode(raw, type=PolicyCard)
    except msgspec.ValidationError as exc:
        raise ModelLoadError(f"the card is neither a segment model card nor a policy card: {exc}") from exc


def _slot(card: ModelCard | PolicyCard) -> str:
    if isinstance(card, PolicyCard):
        if not card.experience:
            raise ModelLoadError(f"policy {card.version} names no experience; retrain with --experience")
        return policy_slot(card.experience)
    return SEGMENTS_SLOT


def build(data: bytes, card: ModelCard | PolicyCard) -> CompiledSegmentModel | CompiledRewardModel:
    """Check and compile one model (blocking: scikit-learn and skops; run it in a thread)."""
    where = f"model {card.version}"
    if isinstance(card, PolicyCard):
        check_sklearn_version(card.sklearn_version, where, f"policy {card.version}")
        return compile_policy(load_trusted(data, POLICY_TYPES, where), card)
    return compile_model(load_model_bytes(data, card, where), card)


class ModelRegistry:
    """Register, list, activate and follow models (see the module docstring)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def register(self, data: bytes, card_json: bytes, *, if_absent: bool = False) -> RegisteredModel:
        """Store a new version after checking it loads.

        Raises :class:`ModelLoadError` when it does not load, ``InvalidInput`` when the card's
        version has not the shape of one, and :class:`ModelVersionExists` when that version is
        registered already — unless ``if_absent``: then what is registered is kept and returned
        (workers seeding an empty registry from the same model directory at the same start).
        """
        try:
            card = _decode_card(card_json)
        except msgspec.DecodeError as exc:
            raise ModelLoadError(f"the card is not JSON: {exc}") from exc
        version = check_version(card.version, "card.version")
        slot = _slot(card)
        if not if_absent and await self._redis.exists(_CARD + version):
            raise ModelVersionExists(version)  # said at once; the SET NX below is what decides
        await anyio.to_thread.run_sync(build, data, card)  # refuses oversized, untrusted or mismatched models
        # Three keys in three cluster slots, so no MULTI. The card is the claim (SET NX: one upload
        # of a version wins); then the file, then the index, which readers follow first
        # (index → card → file), so a version is listed only once its card and file are there.
        if not await self._redis.set(_CARD + version, msgspec.json.encode(card), nx=True):
            if if_absent:
                return await self.get(version)
            raise ModelVersionExists(version)
        try:
            await self._redis.set(_FILE + version, data)
            await self._redis.zadd(_INDEX, {version: card.created_at})
        except BaseException:
            with contextlib.suppress(Exception):  # give the version back rather than block it
                await self._redis.delete(_CARD + version)
            raise
        log.info("registered %s model %s", slot, version)
        return RegisteredModel(version=version, slot=slot, card=card)

    async def get(self, version: str) -> RegisteredModel:
        raw = await self._redis.get(_CARD + version)
        if raw is None:
            raise UnknownModelVersion(version)
        card = _decode_card(raw)
        return RegisteredModel(version=version, slot=_slot(card), card=card)

    async def list(self) -> tuple[dict[str, str], list[RegisteredModel]]:
        """Active version per slot, and every registered model, newest first."""
        active = {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (await self._redis.hgetall(_ACTIVE)).items()
        }
        versions = [v.decode() if isinstance(v, bytes) else v for v in await self._redis.zrevrange(_INDEX, 0, -1)]
        models = []
        for version in versions:
            with contextlib.suppress(UnknownModelVersion, ModelLoadError):
                models.append(await self.get(version))
        return active, models

    async def activate(self, version: str) -> RegisteredModel:
        """Make ``version`` the active model of its slot and tell every worker (roll back the same way).

        ``version`` must have the shape of one (``InvalidInput`` naming ``version``) and be fully
        registered, card and file (else :class:`UnknownModelVersion`)."""
        model = await self.get(check_version(version))
        if not await self._redis.exists(_FILE + version):
            raise UnknownModelVersion(version)  # a registration still writing (or one that failed)
        # Set, then announce (not one MULTI: a cluster transaction cannot carry PUBLISH). A worker
        # that misses the message still reads the active hash when it (re)starts.
        await self._redis.hset(_ACTIVE, model.slot, version)
        await self._redis.publish(UPDATES_CHANNEL, f"{model.slot} {version}")
        log.info("activated %s model %s", model.slot, version)
        return model

    async def set_shadow(self, version: str) -> RegisteredModel:
        """Run policy ``version`` in shadow beside the live policy of its card's experience, on every
        worker (replacing any other shadow of that experience). Raises ``InvalidInput`` for a segment
        model (it chooses no variants) and :class:`UnknownModelVersion` as :meth:`activate` does."""
        model = await self.get(check_version(version))
        card = model.card
        if not isinstance(card, PolicyCard) or not card.experience:
            raise InvalidInput(
                f"version: {version} is not a bandit policy; only a policy can run in shadow",
                problems=[Problem("version", "not a bandit policy")],
            )
        if not await self._redis.exists(_FILE + version):
            raise UnknownModelVersion(version)
        await self._redis.hset(MODELS_SHADOW_KEY, card.experience, version)
        await self._redis.publish(UPDATES_CHANNEL, f"{shadow_slot(card.experience)} {version}")
        log.info("policy %s in shadow for %s", version, card.experience)
        return model

    async def clear_shadow(self, experience: str) -> bool:
        """Stop the shadow of ``experience`` on every worker; whether there was one."""
        removed = bool(await self._redis.hdel(MODELS_SHADOW_KEY, experience))
        await self._redis.publish(UPDATES_CHANNEL, f"{shadow_slot(experience)} {_NO_SHADOW}")
        return removed

    async def shadows(self) -> dict[str, str]:
        """The policy version in shadow, by experience."""
        return {
            (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in (await self._redis.hgetall(MODELS_SHADOW_KEY)).items()
        }

    async def active_versions(self) -> dict[str, str]:
        active, _ = await self.list()
        return active

    async def load(self, version: str) -> CompiledSegmentModel | CompiledRewardModel:
        """The compiled model of a registered version."""
        model = await self.get(version)
        data = await self._redis.get(_FILE + version)
        if data is None:
            raise UnknownModelVersion(version)
        return await anyio.to_thread.run_sync(build, data, model.card)

    async def follow(
        self, on_activate: Callable[[str, str], Awaitable[None]], stop: asyncio.Event | None = None
    ) -> None:
        """Call ``on_activate(slot, version)`` for every activation any worker makes."""
        while stop is None or not stop.is_set():
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(UPDATES_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    data = message["data"]
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    slot, _, version = text.partition(" ")
                    try:
                        await on_activate(slot, version)
                    except Exception:
                        log.exception("could not switch %s to %s; the previous model keeps serving", slot, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model updates channel lost (%s); resubscribing in 1 s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


class _ShadowTarget(Protocol):
    def shadow(self, experience: str, model: CompiledRewardModel | None) -> None: ...


async def apply_shadow(registry: ModelRegistry, policies: _ShadowTarget, slot: str, version: str) -> None:
    """A worker's side of a ``shadow:<experience> <version>`` message: load the candidate and run it
    in shadow (``-``: stop). A version that does not load leaves no shadow (logged), never a stale one."""
    experience = slot.removeprefix(SHADOW_PREFIX)
    if version == _NO_SHADOW:
        policies.shadow(experience, None)
        return
    try:
        model = await registry.load(version)
    except (ModelLoadError, UnknownModelVersion) as exc:
        log.error("policy %s not put in shadow here: %s", version, exc)
        policies.shadow(experience, None)
        return
    policies.shadow(experience, model if isinstance(model, CompiledRewardModel) else None)
