"""What the exposure writer queues, spools and sends (:mod:`personalization.store.exposures`): the
item types and the spool record, kept apart so the writer's module holds the writing alone."""

from __future__ import annotations

import msgspec

from personalization.types import Exposure

__all__ = ["SPOOL_DECODER", "Item", "Prepared", "SpoolRecord", "is_cluster"]

#: An item as a replayed spool record or a caller of ``_send`` gives it: ``(exposure, None)`` or
#: ``(None, (visitor id, experience, variant))``.
Item = tuple["Exposure | None", "tuple[str, str, int] | None"]
#: An item as :meth:`ExposureWriter.submit` prepares it, once, for the journal, the spool and the batch
#: script: ``(entry, stream, payload, profile, field, value)``. ``entry`` is the journal/spool line's
#: ``{"x": …}`` or ``{"a": …}``; ``payload`` the stream entry's ``data`` (``None`` for an assignment);
#: ``profile``/``field``/``value`` the profile-hash pair it sets (an exposure's frequency counter
#: ``f:<experience>`` → ``"<day> <week>"``, an assignment's ``a:<experience>`` → variant), or ``None``s.
#: Issue 22: encoding once and building these once per request (not again in ``_send``) cut the
#: writer's CPU per request (numbers in ``submit``'s docstring).
Prepared = tuple[bytes, str, "bytes | None", "str | None", "str | None", "str | int | None"]


def is_cluster(redis: object) -> bool:
    try:
        from redis.asyncio.cluster import RedisCluster
    except ImportError:  # pragma: no cover - every supported redis-py has it
        return False
    return isinstance(redis, RedisCluster)


class SpoolRecord(msgspec.Struct, frozen=True):
    x: Exposure | None = None
    a: tuple[str, str, int] | None = None


SPOOL_DECODER = msgspec.json.Decoder(SpoolRecord)
