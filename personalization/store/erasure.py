"""Erasing a visitor from Redis: their keys, stream entries, event markers and feedback tags.

Every per-visitor key carries a digest of the visitor id as its hash tag (``vary:vh:{<tag>}:…``,
:func:`~personalization.store.keys.visitor_tag`), so one ``SCAN MATCH`` finds them all (on a
cluster, on the one node owning their slot) and nothing else — the tag is fixed-length hex closed
by ``}``, so erasing ``kv-alice`` cannot reach the keys of ``kv-alice}:x``, as the raw id in the
tag once did — and one ``DEL`` of them stays within a slot. That includes the aggregation's step-1
outcomes (``…:agg:<day>``), whose entries are erased here too, so they can never be replayed.
Streams hold records of many visitors, so their entries are read in chunks and the visitor's are
deleted with ``XDEL``; when the streams are partitioned only the visitor's own partition holds
them (:func:`~personalization.store.partitions.stream_for`), so only that one is read. (After a
change of ``VARY_STREAM_PARTITIONS`` older entries sit in the partition of the old count: erase
with that count too.)

Two traces live outside the visitor's keys and are found through what those keys and entries say
before they go:

* **event markers** ``{<stream tag>}:e:<digest>`` (a BLAKE2b of visitor and event id, in the
  stream's slot, :func:`~personalization.store.keys.event_stream_marker`): the event ids come from
  the visitor's own markers ``…:e:<event id>`` and from their events in the stream;
* **feedback ``problem`` tags**, free text kept in the sets ``vary:agg:{<x>}:problems:<v>:<tp>``: each
  of the visitor's feedback events with a ``problem`` is matched, as the aggregation did, to the
  experiences of their ``…:x`` hash whose attribution window holds it, and the tag is removed there
  — unless another visitor's feedback in the same stream gave the same words at the same
  touchpoint: a set cannot tell whose a shared tag is, so it stays as theirs. (With partitioned
  streams only the visitor's own partition is read, so a tag shared only with a visitor of
  another partition goes.)

**A person is erased whole**: :func:`people_to_erase` turns the id asked for — an anonymous id, a
person id or a ``user_id`` — into the person (:mod:`personalization.store.identity`) and every id
linked to it; each is erased as above, and the user id's index key with them.

Aggregated counters (sums and counts per variant, with no visitor in them) stay: they are not
personal data, and removing one visitor's contribution would need the raw events that were just
erased. Copies outside Redis (spool files, exports, sinks) are :mod:`personalization.store.erase_copies`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
from msgspec import Meta
from redis.asyncio import Redis

from personalization.store.identity import PERSON_FIELD, USER_FIELD, linked_ids
from personalization.store.keys import (
    EVENTS,
    EXPOSURES,
    agg_key,
    event_stream_marker,
    person_index_key,
    profile_key,
    visitor_key_prefix,
    visitor_keys_pattern,
)
from personalization.store.partitions import stream_for

__all__ = ["Erasure", "erase_visitor", "people_to_erase"]

#: The touchpoint of an event that names none (as :mod:`personalization.measurement.attribution` counts it).
_NO_TOUCHPOINT = "(none)"
_CHUNK = 500


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """What an erase removed, per kind (fields after ``events_deleted`` were added later, with defaults)."""

    visitor_id: Annotated[str, Meta(description="The visitor (or person) erased.")]
    keys_deleted: Annotated[int, Meta(description="Redis keys deleted (profile, assignments, history, …).")]
    exposures_deleted: Annotated[int, Meta(description="Exposure stream entries deleted.")]
    events_deleted: Annotated[int, Meta(description="Event stream entries deleted.")]
    markers_deleted: Annotated[int, Meta(description="Stream-slot event markers (`{<stream tag>}:e:<digest>`).")] = 0
    problem_tags_removed: Annotated[
        int, Meta(description="Feedback `problem` tags removed from `vary:agg:{<x>}:problems:<v>:<tp>` sets.")
    ] = 0
    dead_letters_deleted: Annotated[
        int, Meta(description="Entries removed from the sinks' dead letters (`vary:sinks:dead:<sink>`).")
    ] = 0
    sink_notices: Annotated[
        int, Meta(description="Erase notices queued for the sinks (`vary:sinks:erasures`): 1, or 0 if none could be.")
    ] = 0
    spool_entries_deleted: Annotated[
        int,
        Meta(
            description="Entries dropped from local spool and journal files, files rewritten, and files of other live workers whose replay drops them (a tombstone in their directory)."
        ),
    ] = 0
    spool_files_rewritten: Annotated[
        int, Meta(description="Local spool files rewritten without the visitor's entries.")
    ] = 0
    spool_files_busy: Annotated[
        int, Meta(description="Spool files in use by a worker, left to its replay (which drops the entries).")
    ] = 0
    export_rows_deleted: Annotated[
        int,
        Meta(description="Rows removed from Parquet exports, and export files rewritten (or removed when emptied)."),
    ] = 0
    export_files_rewritten: Annotated[
        int, Meta(description="Parquet export files rewritten (or removed when emptied).")
    ] = 0
    aof_rewrite: Annotated[
        str,
        Meta(
            description="The embedded Valkey's append-only file: `started`, `scheduled`, `retrying`, `failed`, `off` (no AOF) or `external` (not Vary's server: see docs/security.md for the bound)."
        ),
    ] = "external"
    linked_ids: Annotated[
        list[str],
        Meta(
            description="The other ids erased with it: the person and every id linked to it (`DELETE` of any one erases them all), and whether a `user_id`'s link to its person was removed."
        ),
    ] = msgspec.field(default_factory=list)
    user_link_deleted: Annotated[bool, Meta(description="Whether a `user_id`'s link to this person was removed.")] = (
        False
    )


class _Record(msgspec.Struct):
    """What erasing reads of a stream entry."""

    visitor_id: str | None = None
    type: str | None = None
    event_id: str | None = None
    ts: float | None = None
    touchpoint: str | None = None
    problem: str | None = None


_DECODE_RECORD = msgspec.json.Decoder(_Record)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _Scan(msgspec.Struct):
    """What reading one stream found: the visitor's entries deleted, and the feedback tags
    (touchpoint, problem) other visitors gave in it."""

    deleted: int = 0
    records: list[tuple[str, _Record]] = msgspec.field(default_factory=list)
    others_tags: set[tuple[str, str]] = msgspec.field(default_factory=set)


async def _erase_from_stream(redis: Redis, stream: str, visitor_id: str, chunk: int = 5000) -> _Scan:
    """``XDEL`` the visitor's entries; returns how many, the entries (id, record) it deleted, and
    the feedback tags other visitors gave."""
    scan = _Scan()
    start = "-"
    while True:
        entries = await redis.xrange(stream, min=start, max="+", count=chunk)
        if not entries:
            return scan
        mine = []
        for entry_id, fields in entries:
            data = fields.get(b"data") or fields.get("data")
            if data is None:
                continue
            try:
                record = _DECODE_RECORD.decode(data)
            except msgspec.DecodeError:
                continue
            if record.visitor_id == visitor_id:
                mine.append(entry_id)
                scan.records.append((_text(entry_id), record))
            elif record.type == "feedback" and record.problem:
                scan.others_tags.add((record.touchpoint or _NO_TOUCHPOINT, record.problem))
        if mine:
            scan.deleted += int(await redis.xdel(stream, *mine))
        if len(entries) < chunk:
            return scan
        start = "(" + _text(entries[-1][0])


async def _delete_in_chunks(redis: Redis, keys: Sequence[str]) -> int:
    deleted = 0
    for i in range(0, len(keys), _CHUNK):
        deleted += int(await redis.delete(*keys[i : i + _CHUNK]))
    return deleted


def _problem_tags(
    events: Sequence[tuple[str, _Record]], exposures: dict[str, str], others: set[tuple[str, str]]
) -> dict[str, set[str]]:
    """``vary:agg:{<x>}:problems:<v>:<tp>`` → the visitor's tags in it, as the aggregation attributed them:
    to each experience whose window (first exposure … deadline) holds the feedback's time. A tag
    another visitor also gave at that touchpoint (``others``) is theirs too, and stays."""
    tags: dict[str, set[str]] = {}
    for entry_id, record in events:
        if record.type != "feedback" or not record.problem:
            continue
        if (record.touchpoint or _NO_TOUCHPOINT, record.problem) in others:
            continue
        ts = record.ts if record.ts is not None else int(entry_id.split("-", 1)[0]) / 1000.0
        for experience, state in exposures.items():
            variant, first, deadline, *_ = state.split("|")
            try:
                inside = float(first) <= ts <= float(deadline)
            except ValueError:
                continue
            if inside:
                key = agg_key(experience, f"problems:{variant}:{record.touchpoint or _NO_TOUCHPOINT}")
                tags.setdefault(key, set()).add(record.problem)
    return tags


async def erase_visitor(
    redis: Redis,
    visitor_id: str,
    streams: Sequence[str] = (EXPOSURES, EVENTS),
    *,
    partitions: int = 1,
) -> Erasure:
    """Delete everything Vary stores in Redis about one visitor (see the module docstring).
    ``streams`` are the base names (exposures first), ``partitions`` the deployment's partition count."""
    prefix = visitor_key_prefix(visitor_id)
    keys = [_text(key) async for key in redis.scan_iter(match=visitor_keys_pattern(visitor_id), count=1000)]
    event_ids = {key[len(prefix) + 2 :] for key in keys if key.startswith(prefix + "e:")}
    exposed = {_text(k): _text(v) for k, v in (await redis.hgetall(prefix + "x")).items()}
    own = [stream_for(base, visitor_id, partitions) for base in streams]
    exposures = (await _erase_from_stream(redis, own[0], visitor_id)).deleted
    events = deleted_markers = 0
    tags: dict[str, set[str]] = {}
    for stream in own[1:]:
        scan = await _erase_from_stream(redis, stream, visitor_id)
        events += scan.deleted
        ids = event_ids | {r.event_id for _, r in scan.records if r.event_id}
        markers = [event_stream_marker(stream, visitor_id, event_id) for event_id in sorted(ids)]
        deleted_markers += await _delete_in_chunks(redis, markers)  # all in this stream's slot
        for key, found in _problem_tags(scan.records, exposed, scan.others_tags).items():
            tags.setdefault(key, set()).update(found)
    removed_tags = 0
    for key, found in tags.items():  # each set in its experience's slot: one SREM per set
        removed_tags += int(await redis.srem(key, *sorted(found)))
    deleted_keys = await _delete_in_chunks(redis, keys)  # all in the visitor's slot
    return Erasure(
        visitor_id=visitor_id,
        keys_deleted=deleted_keys,
        exposures_deleted=exposures,
        events_deleted=events,
        markers_deleted=deleted_markers,
        problem_tags_removed=removed_tags,
    )


async def people_to_erase(redis: Redis, requested: str) -> tuple[list[str], str | None]:
    """The ids to erase for ``requested`` (itself first, then its person and the person's linked
    ids) and the person's ``user_id`` (whose index key goes too), or ``None`` when no person is
    involved. ``requested`` may be an anonymous id, a person id or a ``user_id``."""
    pipe = redis.pipeline(transaction=False)
    pipe.hmget(profile_key(requested), PERSON_FIELD, USER_FIELD)
    pipe.get(person_index_key(requested))
    (pointer, user), indexed = await pipe.execute()
    people = {_text(found) for found in (pointer, indexed) if found is not None}
    if user is not None:
        people.add(requested)  # the requested id is a person id
    ids = [requested]
    user_id = None if indexed is None else requested
    for person in sorted(people):
        linked, person_user = await linked_ids(redis, person)
        user_id = user_id or person_user
        ids += [i for i in [person, *linked] if i not in ids]
    return ids, user_id
