"""Stored-data migration, run once: schema 1 → 2, visitor ids hashed into their keys' hash tags.

Schema 1 (every version before this one) named a visitor's keys with the raw id as the cluster
hash tag, ``vary:v:{<visitor id>}:<suffix>``. An id holding a brace (``}lead-brace``) moved the tag
and scattered one visitor over several slots, so on a cluster every script over their keys failed;
glob characters and ids prefixing others (``kv-alice`` / ``kv-alice}:x``) reached other visitors'
keys in erasure's ``SCAN``. Schema 2 names them ``vary:vh:{<visitor tag>}:<suffix>``
(:func:`~personalization.store.keys.visitor_tag`, a hex digest). This module moves every schema-1
key to its schema-2 name, keeping value and TTL:

* on a single server, ``RENAMENX`` (atomic; keeps the TTL);
* on a cluster the two names hash to different slots and ``RENAME`` cannot cross slots, so the key
  is copied with ``DUMP`` + ``PTTL`` → ``RESTORE`` (TTL kept), then deleted. The schema-1 keys are
  found by ``SCAN MATCH vary:v:*`` on every primary.

If the schema-2 key already exists (a worker of this version wrote it while the migration was on
its way), a hash is merged field by field, the existing (newer) value winning; any other type keeps
the newer key; the old one is deleted either way.

The visitor id is read back from the old name: everything between ``vary:v:{`` and the last ``}:``
followed by a schema-1 suffix (``p``, ``x``, ``xf``, ``t``, ``cx``, ``cxb:<dim>``, ``e:<event id>``,
``agg:<day>``). Only an event id that itself ends in such a suffix after ``}:`` could be read
wrongly; that one marker then keeps guarding a key no one reads, and expires (7 days).

When: :func:`migrate` is called by every worker at start (``api/runtime.py``, ``Runtime.start``,
before anything is served). ``vary:schema`` (:data:`~personalization.store.keys.SCHEMA_KEY`)
records the version once done, so a later start costs one ``GET``. Workers starting together may
each run it: every step tolerates a key another one already moved.
"""

from __future__ import annotations

import logging
import re

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from personalization.store.keys import (
    LEGACY_VISITOR_PATTERN,
    SCHEMA_KEY,
    SCHEMA_VERSION,
    visitor_key_prefix,
)

__all__ = ["Migration", "migrate", "new_name", "schema_version"]

log = logging.getLogger("vary.migrate")

_LEGACY = re.compile(rb"\Avary:v:\{(.*)\}:(p|x|xf|t|cx|cxb:.*|e:.*|agg:[0-9]+)\Z", re.DOTALL)


class Migration(msgspec.Struct, frozen=True, kw_only=True):
    """What one run did: ``moved`` keys renamed, ``merged`` into an existing schema-2 key,
    ``skipped`` (gone meanwhile, or not a schema-1 visitor key)."""

    from_version: int
    to_version: int
    moved: int = 0
    merged: int = 0
    skipped: int = 0


async def schema_version(redis: Redis) -> int:
    """The stored layout's version: ``vary:schema``, or 1 when absent (written before it existed)."""
    raw = await redis.get(SCHEMA_KEY)
    return int(raw) if raw else 1


def new_name(old: bytes) -> str | None:
    """The schema-2 name of a schema-1 visitor key, or ``None`` if ``old`` is not one."""
    match = _LEGACY.match(old)
    if match is None:
        return None
    try:
        visitor = match.group(1).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return visitor_key_prefix(visitor) + match.group(2).decode("utf-8", "surrogatepass")


async def migrate(redis: Redis) -> Migration | None:
    """Bring the stored data to :data:`~personalization.store.keys.SCHEMA_VERSION`; ``None`` when it
    already is (see the module docstring)."""
    version = await schema_version(redis)
    if version >= SCHEMA_VERSION:
        return None
    cluster = isinstance(redis, RedisCluster)
    scan = redis.scan_iter(match=LEGACY_VISITOR_PATTERN, count=1000)  # a cluster client scans every primary
    old_keys = [key if isinstance(key, bytes) else key.encode() async for key in scan]
    moved = merged = skipped = 0
    for old in old_keys:
        new = new_name(old)
        if new is None:
            log.warning("schema migration: %r is not a visitor key of schema 1; left as it is", old[:80])
            skipped += 1
            continue
        outcome = await (_copy(redis, old, new) if cluster else _rename(redis, old, new))
        moved += outcome == "moved"
        merged += outcome == "merged"
        skipped += outcome == "gone"
    await redis.set(SCHEMA_KEY, SCHEMA_VERSION)
    done = Migration(from_version=version, to_version=SCHEMA_VERSION, moved=moved, merged=merged, skipped=skipped)
    log.info("stored data migrated to schema %d: %s", SCHEMA_VERSION, done)
    return done


async def _rename(redis: Redis, old: bytes, new: str) -> str:
    try:
        if await redis.renamenx(old, new):
            return "moved"
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return "gone"
        raise
    return await _merge(redis, old, new)


async def _copy(redis: Redis, old: bytes, new: str) -> str:
    dumped = await redis.dump(old)
    if dumped is None:
        return "gone"
    pttl = int(await redis.pttl(old))
    if pttl == -2:
        return "gone"
    try:
        await redis.restore(new, max(pttl, 0), dumped)
    except ResponseError as exc:
        if "busykey" not in str(exc).lower():
            raise
        return await _merge(redis, old, new)
    await redis.delete(old)
    return "moved"


async def _merge(redis: Redis, old: bytes, new: str) -> str:
    """``new`` exists: a hash takes the old fields it lacks; anything else keeps ``new``."""
    kinds = [k.decode() if isinstance(k, bytes) else k for k in (await redis.type(old), await redis.type(new))]
    if kinds[0] == "none":
        return "gone"
    if kinds == ["hash", "hash"]:
        for field, value in (await redis.hgetall(old)).items():
            await redis.hsetnx(new, field, value)
    await redis.delete(old)
    return "merged"
