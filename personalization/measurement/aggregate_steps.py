"""The three steps that fold stream entries into the aggregates exactly once, under crashes and redelivery.

:class:`personalization.measurement.aggregation.Aggregator` reads the streams and decides *when* an
entry is processed; this module processes a list of them, in order: the outcome of each (step 1),
the shared counters (step 2), then compaction and ``XACK`` (step 3). What an entry counts for is
:mod:`personalization.measurement.attribution`; the keys are :mod:`personalization.store.keys`.

How an entry is processed: three steps, each within one hash slot
-----------------------------------------------------------------
On a Redis Cluster a script may only touch keys of one slot, but one entry changes the visitor's
state (``vary:vh:{<visitor tag>}:…``), the counters of each experience it concerns (``vary:agg:{<x>}:…``),
journey weeks (``vary:cx:{w:<week>}:…``) and a few global sets. So an entry goes through:

1. **Outcome** (visitor slot; ``scripts/outcome.lua``, chunks of :data:`CHUNK` records). Reads and
   updates the visitor's state and computes every change to shared keys as a list of ops, grouped
   by hash tag. The outcome is stored under the entry (``vary:vh:{<visitor tag>}:agg:<day>``, field
   ``<stream>|<entry id>``, written ``'!'`` before the state changes and the packed outcome after,
   atomically since it is one script). Run again, the script returns the stored outcome and changes
   nothing: the outcome of an entry is computed exactly once, whoever runs it how often.
2. **Apply** (one script call per hash tag, ``scripts/apply.lua``). For each entry's group of ops
   it sets a marker ``vary:agg:seen:{<tag>}:<hour>`` field ``<stream>|<entry id>`` (``HSETNX``) and
   applies the ops only if the marker was new — within the same script, so a group is applied
   exactly once per slot. Groups of set additions only (``SADD`` of indexes) are idempotent and
   need no marker.
3. **Done**: the stored outcome is shrunk to ``''`` ("applied") and the entry is acknowledged
   (``XACK``), only once step 2 succeeded for *every* group of the entry.

Why exactly once under crashes and redelivery: a crash leaves the entry pending (it is acknowledged
in step 3 only), so another consumer claims it (``XAUTOCLAIM`` after ``claim_idle_ms``) or its own
consumer re-reads it on restart. Crash before or in step 1: the script is atomic, so the outcome is
either stored with the state change or neither happened; redelivery computes it once. Crash between
1 and 2, or part-way through 2: step 1 returns the *stored* outcome (not a recomputation over state
that already includes the entry), and step 2 applies only the groups whose markers are missing —
the ones not yet applied. Crash between 2 and 3 (or between the shrink and the ``XACK``): step 1
says "applied" (or returns the outcome, whose groups are all marked), so nothing is counted again.
A replay of old entries (``XGROUP SETID … 0``) likewise finds them applied. The guarantee lasts as
long as the dedupe state, ``dedupe_ttl_s`` (both the outcome hashes and the markers expire then):
never replay entries older than that — keep the streams trimmed to that horizon (``XTRIM … MINID``).
Anonymous exposures (no visitor id) have no visitor state: their step 1 is a pure function of the
record, stored nowhere, and step 2's markers alone make them count once.

Floats: the script packs ops with ``cmsgpack``, which keeps every double exact, and within a batch
each slot's groups are applied in entry order, so every ``HINCRBYFLOAT`` receives the same operands
in the same order as when this was one script per chunk — single-node results are unchanged.

Failures: a step-1 chunk that errors is re-run one record per call, a step-2 call one group per
call (a cluster pipeline redis-py refuses whole — one call's keys spanning slots — is sent one call
at a time). A record or group whose own call still fails (:func:`poisoned`: a script error, keys of
several slots) is *dead-lettered*: logged with its stream and id, recorded in ``vary:agg:dead``
(stream, id, error; capped, no visitor data), counted (``poisoned``) and acknowledged with the rest,
so one bad entry neither fails the round nor stays pending (a pending exposure holds back the
events after it and stream trimming). A record that raised part-way keeps its ``'!'`` (and what it
wrote before the error) and a group its marker, so a replay does not run them again. An entry whose
step fails because the server cannot run it now (``OOM``, ``READONLY``, ``BUSY``, a lost
connection, a slot moving) is not acknowledged and is retried from its stored outcome later.

Round trips per batch (``batch`` entries of each stream): ``XREADGROUP`` (one per partition,
pipelined, on a cluster); for exposures steps 1, 2 and 3 + ``XPENDING``; for the released events
steps 1, 2 and 3 — seven for up to 2 × ``batch`` × partitions entries. Cost of the dedupe state:
an outcome field per entry plus one marker field per counter slot it touches (an experience, a
week), for ``dedupe_ttl_s``.

Cluster safety: step 1 declares the visitor's keys (the dynamic ``…:cxb:<dim>`` keys share their
tag); step 2 declares every key of its ops; ``XACK`` and ``XPENDING`` name one stream. On a single
node (``cluster=False``) step-1 chunks mix visitors, which is only valid there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError

from personalization.measurement.attribution import APPLY_SCRIPT, OUTCOME_SCRIPT
from personalization.store.keys import (
    AGG_DEAD_LETTERS,
    marker_key,
    outcome_key,
    visitor_key_prefix,
)

__all__ = ["CHUNK", "DEDUPE_TTL_S", "STATE_TTL_S", "AggregateSteps", "Entry", "entry_ms", "text"]

log = logging.getLogger("vary.aggregation")

#: How long processed entry ids are remembered; never replay stream entries older than this.
DEDUPE_TTL_S = 30 * 86_400
#: Per-visitor attribution state lives as long as profiles (an experiment must not see a returning
#: visitor as new).
STATE_TTL_S = 400 * 86_400
#: Records per script call: ~100 entries keep each call around a millisecond of server time.
CHUNK = 100

_RECORDS_ENCODER = msgspec.json.Encoder()
#: Step-1 outcomes (packed by the script with ``cmsgpack``) and step-2 payloads. msgpack keeps every
#: float64 exact, so a delta computed by step 1 reaches ``HINCRBYFLOAT`` as the very same double.
_OUTCOME_DECODER = msgspec.msgpack.Decoder(list[tuple[str, int, list[list[Any]]]])
_OUTCOME_ENCODER = msgspec.msgpack.Encoder()


#: Replies that say the server could not run a call *now* (memory, failover, loading, a busy script,
#: a slot moving): the entry stays pending and is retried. Any other refusal is the entry's own.
_TRANSIENT = re.compile(r"\b(OOM|READONLY|LOADING|BUSY|MASTERDOWN|NOREPLICAS|CLUSTERDOWN|TRYAGAIN|MOVED|ASK)\b")
#: Dead letters kept (``XADD … MAXLEN ~``): stream, entry id and error only, no visitor data.
DEAD_LETTERS_MAX = 10_000


def poisoned(error: BaseException) -> bool:
    """Whether ``error`` belongs to the entry and would recur on every retry: a script error, or keys
    of several slots (``CROSSSLOT``, or redis-py's "keys must map to the same key slot"), as
    opposed to a server that cannot run anything right now."""
    if isinstance(error, RedisClusterException):
        return "same key slot" in str(error) or "CROSSSLOT" in str(error)
    if isinstance(error, ResponseError) and not isinstance(error, NoScriptError):
        return _TRANSIENT.search(str(error)) is None
    return False


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def entry_ms(entry_id: str) -> int:
    """The milliseconds part of a stream entry id (``<ms>-<seq>``)."""
    return int(entry_id.split("-", 1)[0])


class Entry:
    """One stream entry on its way through the three steps (see the module docstring). ``record``
    is what step 1 reads (:func:`~personalization.measurement.attribution.exposure_record`,
    :func:`~personalization.measurement.attribution.event_record`); its outcome field and key and
    the visitor's key prefix are filled in here."""

    __slots__ = ("stream", "entry_id", "field", "okey", "record", "status", "outcome", "fresh", "ok", "dead")

    def __init__(self, stream: str, entry_id: str, visitor_id: str | None, record: list[str]) -> None:
        self.stream = stream
        self.entry_id = entry_id
        self.field = f"{stream}|{entry_id}"
        self.okey = outcome_key(visitor_id, entry_id) if visitor_id else ""
        record[1], record[2] = self.field, self.okey
        record[3] = visitor_key_prefix(visitor_id) if visitor_id else ""
        self.record = record
        self.status = -1  # step 1 not done
        self.outcome = b""
        self.fresh = False  # a marked group was applied by this run
        self.ok = True
        self.dead = ""  # the entry's own error (:func:`poisoned`): dead-lettered and acknowledged


class AggregateSteps:
    """Runs the three steps for one consumer of ``group`` (see the module docstring) and counts what
    became of the entries: ``processed`` (counted), ``duplicates`` (already counted, skipped),
    ``failed`` (the server could not run a step now; the entry stays pending), ``poisoned`` (the
    entry's own call was refused — a script error, keys of several slots: logged with its stream
    id, written to ``vary:agg:dead`` and acknowledged, so it cannot hold up the rest)."""

    def __init__(
        self, redis: Redis, *, group: str, cluster: bool, dedupe_ttl_s: int, state_ttl_s: int
    ) -> None:
        self._redis = redis
        self.group = group
        self.cluster = cluster
        self._dedupe_ttl = int(dedupe_ttl_s)
        self._state_ttl = int(state_ttl_s)
        self._sha = ""
        self._apply_sha = ""
        self.processed = 0
        self.duplicates = 0
        self.failed = 0
        self.poisoned = 0
        #: The outcome script's ARGV[4] and ARGV[5] (scripts/outcome.lua): the goals each experience
        #: counts (:class:`~personalization.measurement.goals.GoalPolicy`, encoded; ``b""`` = all) and
        #: the most conversions per visitor, experience and minute (0 = no cap). Set by the aggregator.
        self.goal_policy = b""
        self.max_rate = 0

    async def load_scripts(self) -> None:
        self._sha = text(await self._redis.script_load(OUTCOME_SCRIPT))
        self._apply_sha = text(await self._redis.script_load(APPLY_SCRIPT))

    async def run(self, items: list[Entry], pending_of: list[str]) -> dict[int, int]:
        """The three steps over ``items`` (in order), three pipelined round trips: the outcomes
        (step 1), the shared aggregates (step 2), then compaction + ``XACK`` (step 3), with ``XPENDING``
        of each stream of ``pending_of`` (the exposure partitions, in order; none: no ``XPENDING``).
        Returns partition → smallest exposure id (ms) still pending in the group."""
        if items:
            await self._outcomes(items)
            await self._apply(items)
        pipe = self._redis.pipeline(transaction=False)
        acks: dict[str, list[str]] = {}
        for item in items:
            if item.dead:
                self.poisoned += 1
                acks.setdefault(item.stream, []).append(item.entry_id)
                fields = {"stream": item.stream, "id": item.entry_id, "error": item.dead[:500]}
                pipe.xadd(AGG_DEAD_LETTERS, fields, maxlen=DEAD_LETTERS_MAX, approximate=True)
                continue
            if item.status < 0 or not item.ok:
                self.failed += 1
                continue
            if item.okey and item.outcome and item.status in (1, 3):
                pipe.hset(item.okey, item.field, "")
            acks.setdefault(item.stream, []).append(item.entry_id)
            if item.status == 4:
                log.error("%s raised part-way in an earlier run; acknowledged with what it had written", item.field)
            counted = item.status in (1, 2, 3) and (item.okey != "" or item.fresh)
            if counted:
                self.processed += 1
            else:
                self.duplicates += 1
        for stream, ids in acks.items():
            pipe.xack(stream, self.group, *ids)
        for stream in pending_of:
            pipe.xpending(stream, self.group)
        if not len(pipe):
            return {}
        results = await pipe.execute()
        if not pending_of:
            return {}
        pending: dict[int, int] = {}
        for p, summary in enumerate(results[-len(pending_of):]):
            if summary and summary.get("pending"):
                pending[p] = entry_ms(text(summary["min"]))
        return pending

    def _chunks(self, items: list[Entry]) -> list[list[Entry]]:
        """Step-1 calls: :data:`CHUNK` records each, of one slot on a cluster, in entry order."""
        if not self.cluster:
            return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
        by_slot: dict[int, list[Entry]] = {}
        for item in items:
            by_slot.setdefault(key_slot(item.okey.encode()) if item.okey else -1, []).append(item)
        return [group[i : i + CHUNK] for group in by_slot.values() for i in range(0, len(group), CHUNK)]

    async def _outcomes(self, items: list[Entry]) -> None:
        """Step 1: every entry's outcome, computed once in its visitor's slot (stored, or returned as
        stored). A chunk that fails is re-run one record per call; a record that fails alone stays
        pending (``status`` stays -1)."""

        def left_pending(item: Entry, error: Exception) -> None:
            if poisoned(error):
                item.dead = f"step 1: {error}"
                log.error("aggregating %s failed, dead-lettered: %s", item.field, error)
            else:
                log.error("aggregating %s failed, left pending: %s", item.field, error)

        await self._run_retrying(
            self._outcome_call, self._chunks(items), self._take_outcomes, left_pending,
            "aggregation script failed on a chunk (%s); retrying its records one by one",
        )

    @staticmethod
    def _take_outcomes(chunk: list[Entry], result: list[Any]) -> None:
        for item, (status, outcome) in zip(chunk, result):
            item.status = int(status)
            item.outcome = outcome if isinstance(outcome, bytes) else outcome.encode()

    def _outcome_call(self, pipe: Any, chunk: list[Entry]) -> None:
        keys: list[str] = []
        if self.cluster:  # declared for routing; the script touches these visitors' keys only
            seen: set[str] = set()
            for item in chunk:
                if item.okey and item.okey not in seen:
                    seen.add(item.okey)
                    base = item.record[3]  # the visitor key prefix
                    keys += [item.okey, base + "x", base + "xf", base + "t", base + "cx"]
        # execute_command: redis-py's cluster pipeline blocks its ``evalsha`` method, not the command.
        pipe.execute_command(
            "EVALSHA", self._sha, len(keys), *keys, _RECORDS_ENCODER.encode([item.record for item in chunk]),
            self._dedupe_ttl, self._state_ttl, self.goal_policy, self.max_rate,
        )

    async def _apply(self, items: list[Entry]) -> None:
        """Step 2: each outcome's groups, one call per hash tag (:data:`CHUNK` entries at most), in entry
        order so float sums add up in the same order as before. A call that fails is re-run one group
        per call (markers make that safe); an entry whose group still fails stays pending."""
        by_tag: dict[str, list[tuple[Entry, list[Any]]]] = {}
        for item in items:
            if item.status not in (1, 3) or not item.outcome:
                continue
            for tag, marked, ops in _OUTCOME_DECODER.decode(item.outcome):
                marker = marker_key(tag, item.entry_id) if marked else ""
                by_tag.setdefault(tag, []).append((item, [marker, item.field, ops]))
        calls = [group[i : i + CHUNK] for group in by_tag.values() for i in range(0, len(group), CHUNK)]

        def left_pending(group: tuple[Entry, list[Any]], error: Exception) -> None:
            group[0].ok = False
            if poisoned(error):
                group[0].dead = f"step 2: {error}"
                log.error("applying %s failed, dead-lettered: %s", group[0].field, error)
            else:
                log.error("applying %s failed, left pending: %s", group[0].field, error)

        await self._run_retrying(
            self._apply_call, calls, self._take_applied, left_pending,
            "applying aggregates failed on a call (%s); retrying its entries one by one",
        )

    @staticmethod
    def _take_applied(call: list[tuple[Entry, list[Any]]], result: list[Any]) -> None:
        for (item, group), applied in zip(call, result):
            if group[0] and int(applied):
                item.fresh = True

    def _apply_call(self, pipe: Any, call: list[tuple[Entry, list[Any]]]) -> None:
        keys: dict[str, None] = {}
        for _, (marker, _, ops) in call:
            if marker:
                keys[marker] = None
            for op in ops:
                keys[op[0]] = None
        payload = _OUTCOME_ENCODER.encode([group for _, group in call])
        pipe.execute_command("EVALSHA", self._apply_sha, len(keys), *keys, payload, self._dedupe_ttl)

    async def _run_retrying(
        self,
        add: Callable[[Any, Any], None],
        calls: list[list[Any]],
        take: Callable[[list[Any], list[Any]], None],
        left_pending: Callable[[Any, Exception], None],
        failed: str,
    ) -> None:
        """Both steps' failure rule: run ``calls``; re-run each element of a failed call in a call of its
        own (log ``failed`` once with the first error); an element that still fails is ``left_pending``."""
        results = await self._run_scripts(add, calls)
        retry = []
        for call, result in zip(calls, results):
            if isinstance(result, Exception):
                retry.append(call)
            else:
                take(call, result)
        if retry:
            log.error(failed, next(r for r in results if isinstance(r, Exception)))
            singles = [[element] for call in retry for element in call]
            for single, result in zip(singles, await self._run_scripts(add, singles)):
                if isinstance(result, Exception):
                    left_pending(single[0], result)
                else:
                    take(single, result)

    async def _run_scripts(self, add: Callable[[Any, Any], None], calls: list[Any]) -> list[Any]:
        """Pipeline one script call per element of ``calls``; reload the scripts once if the server
        lost them (``SCRIPT FLUSH``, a restart: both steps are idempotent, so re-running is safe).
        Each result is the call's reply or its error: redis-py refuses a whole cluster pipeline when
        one call's keys span slots, so then every call is sent alone and the refusal stays its own."""
        if not calls:
            return []

        async def execute(batch: list[Any]) -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for call in batch:
                add(pipe, call)
            try:
                return await pipe.execute(raise_on_error=False)
            except (RedisClusterException, ResponseError) as exc:
                if len(batch) == 1:
                    return [exc]
                return [result for call in batch for result in await execute([call])]

        results = await execute(calls)
        if any(isinstance(r, NoScriptError) for r in results):
            await self.load_scripts()
            results = await execute(calls)
        return results
