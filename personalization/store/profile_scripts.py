"""The profile store's batch scripts: a loop turn's profile reads, or its trait merges, as ONE ``EVALSHA``.

Why (issue 22): :class:`~personalization.store.profiles.RedisProfileStore` already coalesced a loop
turn's reads into one round trip, but as a redis-py pipeline of three ``HGETALL`` per visitor, and
redis-py parses a pipeline's replies one by one in Python, each under its own ``asyncio.timeout``
(the client sets ``socket_timeout``): py-spy put ``Pipeline.parse_response``/``read_response`` and
those timeouts at ~20 % of a personalize request's CPU. The trait merges of a turn went the same way,
one ``EVALSHA`` reply per visitor. Sent as one script call, the whole batch comes back as one nested
reply that the C parser (hiredis) reads in one go; the Python left is a ``dict(zip(...))`` per hash.

Only for a single server: a cluster refuses a script whose keys live in different slots, so there
the store keeps its pipeline (reads) and its one call per merge. The keys and what is stored in them
do not change; the scripts only read (:data:`READ_LUA`) or apply the same merge as
:data:`~personalization.store.traits.REMEMBER_LUA` to each key (:data:`REMEMBER_MANY_LUA`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from personalization.store.traits import TRAITS_LUA

__all__ = [
    "READ_LUA",
    "REMEMBER_MANY_LUA",
    "BatchScript",
    "hashes",
    "together",
]

_SCRIPTS = Path(__file__).with_name("scripts")

#: Per key, its ``HGETALL`` reply (``scripts/profile_read.lua``).
READ_LUA = (_SCRIPTS / "profile_read.lua").read_text(encoding="utf-8")

#: Each key's merge as :data:`~personalization.store.traits.REMEMBER_LUA` does it, one result (or
#: error) per key (``scripts/traits_remember_many.lua``, after ``traits_merge.lua``).
REMEMBER_MANY_LUA = TRAITS_LUA + (_SCRIPTS / "traits_remember_many.lua").read_text(encoding="utf-8")

_Hash = Mapping[bytes | str, bytes | str]


class BatchScript:
    """One of these scripts, sent as ``EVALSHA`` in a pipeline of its own.

    The pipeline lets the first call (and the one after a ``NOSCRIPT``: the server restarted, failed
    over or ran ``SCRIPT FLUSH``) carry ``SCRIPT LOAD`` in the same round trip, so a batch never costs
    a second one; and it keeps "one pipeline, one round trip" true for the store's callers. It costs
    no more than a direct ``EVALSHA`` (106 vs 109 µs CPU per batch of 32 reads, against 731 µs for
    the pipeline of 96 ``HGETALL``; /work/scratch/profiles/micro.py). One per store: whether the
    script is known loaded is a fact about that store's server."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._loaded = False

    async def __call__(self, redis: Redis, keys: Sequence[str], args: Sequence[object] = ()) -> Any:
        """The script's reply for ``keys`` and ``args``: :func:`together` with this one call (so a
        ``NOSCRIPT`` reply loads the script and sends the call once more); an error reply is raised."""
        (reply,) = await together(redis, [(self, keys, args)])
        if isinstance(reply, Exception):
            raise reply
        return reply


async def together(redis: Redis, calls: Sequence[tuple[BatchScript, Sequence[str], Sequence[object]]]) -> list[Any]:
    """Several batch scripts' calls in ONE pipeline (one round trip), in order; each reply in its place,
    an error reply as its exception (not raised: each caller judges its own). A call refused with
    ``NOSCRIPT`` is sent again with its script loaded, and only that call, so none runs twice.

    Why (issue 22): a loop turn's trait merges rode a round trip of their own beside the turn's
    profile reads (a task, a pipeline and a reply each); sent with the reads they cost neither."""
    replies = await _pipeline(redis, calls, [not script._loaded for script, _, _ in calls])
    again = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if again:
        retried = await _pipeline(redis, [calls[i] for i in again], [True] * len(again))
        for i, reply in zip(again, retried):
            replies[i] = reply
    return replies


async def _pipeline(
    redis: Redis, calls: Sequence[tuple[BatchScript, Sequence[str], Sequence[object]]], load: Sequence[bool]
) -> list[Any]:
    pipe = redis.pipeline(transaction=False)
    slots: list[int] = []
    for (script, keys, args), first in zip(calls, load):
        if first:
            pipe.script_load(script.source)
        slots.append(len(pipe))
        pipe.evalsha(script.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
    replies = await pipe.execute(raise_on_error=False)
    for (script, _, _), slot in zip(calls, slots):
        if not isinstance(replies[slot], NoScriptError):
            script._loaded = True
    return [replies[slot] for slot in slots]


def hashes(replies: Sequence[Sequence[bytes | str]]) -> list[_Hash]:
    """Each flat ``HGETALL`` array of :data:`READ_LUA`'s reply as the mapping redis-py's ``HGETALL``
    gives (bytes, or str on a ``decode_responses`` client, as the client's replies are)."""
    mappings: list[_Hash] = []
    for flat in replies:
        pairs = iter(flat)
        mappings.append(dict(zip(pairs, pairs)))
    return mappings
