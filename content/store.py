"""The last good content, kept in Redis so a restart serves it before Contentful answers.

One hash, ``vary:content:state``, holds what the syncing worker last applied: the
:class:`~content.items.ContentItems` (not the compiled snapshot: compiling is deterministic, so every
worker rebuilds the same snapshot from the same items), the sync token to continue from, and the
snapshot version. Other workers poll :meth:`ContentStore.version` (one ``HGET``) to see whether they
are current, and :meth:`ContentStore.load` the items only when they are not.

Items are msgspec JSON compressed with zlib (the ``format`` field says so): the demo space is 11 kB
of JSON and 2.4 kB stored; real spaces compress 4–5×. Encoding and decoding run in a worker thread,
since a large space takes a noticeable time and this is called from the event loop.

What Redis holds may come from an older Vary or be damaged: anything that does not decode is
logged and reported as "nothing stored" (``None``), never raised — the caller then syncs from
scratch, which is always correct.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path

import anyio.to_thread
import msgspec
from msgspec import Struct
from redis.asyncio import Redis

from content.items import ContentItems

__all__ = ["ContentStore", "StoredContent", "CONTENT_STATE_KEY", "STORE_FORMAT"]

log = logging.getLogger("vary.content")

CONTENT_STATE_KEY = "vary:content:state"
#: Bump when the stored encoding of ``items`` changes; other values are ignored on load.
STORE_FORMAT = "json+zlib/1"

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(ContentItems)
# Set the token only on an existing state: a token without its items would be meaningless.
_SET_TOKEN = (Path(__file__).parent / "scripts" / "set_token.lua").read_text()


class StoredContent(Struct, frozen=True, kw_only=True):
    """What :meth:`ContentStore.load` found: items, the token to sync on from, their snapshot
    version, and when they were saved (Unix seconds)."""

    items: ContentItems
    token: str | None
    version: str
    saved_at: float


class ContentStore:
    """Last good content in one Redis hash (see the module docstring).

    ``redis`` must return bytes (``decode_responses=False``, redis-py's default): items are binary.
    """

    def __init__(self, redis: Redis, key: str = CONTENT_STATE_KEY) -> None:
        if redis.get_encoder().decode_responses:  # works for a single server and a RedisCluster
            raise ValueError("ContentStore needs a Redis client with decode_responses=False")
        self._redis = redis
        self.key = key
        self._set_token = redis.register_script(_SET_TOKEN)

    def __repr__(self) -> str:
        return f"ContentStore(key={self.key!r})"

    async def save(self, items: ContentItems, token: str | None, version: str) -> None:
        """Replace the stored state in one transaction: readers see the old state or the new."""
        payload = await anyio.to_thread.run_sync(_encode, items)
        fields: dict[str, bytes | str] = {
            "items": payload,
            "format": STORE_FORMAT,
            "version": version,
            "saved_at": repr(time.time()),
        }
        if token is not None:
            fields["token"] = token
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            pipe.hset(self.key, mapping=fields)  # type: ignore[arg-type]
            await pipe.execute()

    async def save_token(self, token: str | None) -> bool:
        """Move the stored token on when a sync changed nothing; False if nothing is stored."""
        return bool(await self._set_token(keys=[self.key], args=[token or ""]))

    async def version(self) -> str | None:
        """The stored snapshot version (one ``HGET``), or ``None`` when nothing is stored."""
        raw = await self._redis.hget(self.key, "version")
        return _text(raw) if raw is not None else None

    async def load(self) -> StoredContent | None:
        """The stored state, or ``None`` when there is none or it cannot be decoded (logged)."""
        raw = await self._redis.hgetall(self.key)
        if not raw:
            return None
        fields = {_text(name): value for name, value in raw.items()}
        try:
            stored_format = _text(fields.get("format", b""))
            if stored_format != STORE_FORMAT:
                raise ValueError(f"format {stored_format or 'missing'!r}, expected {STORE_FORMAT!r}")
            if "items" not in fields or "version" not in fields:
                raise ValueError("items or version missing")
            items = await anyio.to_thread.run_sync(_decode, fields["items"])
            token = fields.get("token")
            return StoredContent(
                items=items,
                token=_text(token) if token else None,
                version=_text(fields["version"]),
                saved_at=float(_text(fields.get("saved_at", b"0"))),
            )
        except (ValueError, zlib.error, msgspec.DecodeError) as error:  # ValidationError is one too
            log.warning("ignoring the stored content in %s: it cannot be read (%s)", self.key, error)
            return None


def _encode(items: ContentItems) -> bytes:
    return zlib.compress(_ENCODER.encode(items), 6)


def _decode(payload: bytes) -> ContentItems:
    return _DECODER.decode(zlib.decompress(payload))


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value
