"""Exact, replay-safe experiment aggregates: a consumer group over the exposure and event streams.

Results pages need counts over millions of exposures and events; reading raw stream entries per
request would not scale, and approximate counters would not be *exact*. So one consumer group
(default ``vary-aggregate``) folds every stream entry, once, into small per-experience hashes, and
:mod:`personalization.measurement.results` turns those sums into statistics.

The streams may be split into ``partitions`` by visitor (:mod:`personalization.store.partitions`:
``vary:exposures:{p}`` / ``vary:events:{p}``); every consumer reads all of them, so any number of
consumers — threads of one process or many processes — share the work, and a visitor's exposures
and events always sit in partitions with the same number.

How an entry is processed: three steps, each within one hash slot
-----------------------------------------------------------------
On a Redis Cluster a script may only touch keys of one slot, but one entry changes the visitor's
state (``vary:v:{<visitor>}:…``), the counters of each experience it concerns (``vary:agg:{<x>}:…``),
journey weeks (``vary:cx:{w:<week>}:…``) and a few global sets. So an entry goes through:

1. **Outcome** (visitor slot; :data:`_OUTCOME_SCRIPT`, chunks of :data:`CHUNK` records). Reads and
   updates the visitor's state and computes every change to shared keys as a list of ops, grouped
   by hash tag. The outcome is stored under the entry (``vary:v:{<visitor>}:agg:<day>``, field
   ``<stream>|<entry id>``, written ``'!'`` before the state changes and the packed outcome after,
   atomically since it is one script). Run again, the script returns the stored outcome and changes
   nothing: the outcome of an entry is computed exactly once, whoever runs it how often.
2. **Apply** (one script call per hash tag, :data:`_APPLY_SCRIPT`). For each entry's group of ops
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

Failures: a step-1 chunk that errors part-way is re-run one record per call; a record that raised
keeps its ``'!'`` (and whatever it wrote before the error, logged) and is acknowledged on its next
delivery without being re-run. A step-2 call that errors is re-run one group per call; a group
that raised keeps its marker (applied up to the error, logged). An entry whose step fails before
running (``OOM``, ``READONLY``, a lost connection, a slot moving) is not acknowledged and is
retried from its stored outcome later.

Round trips per batch (``batch`` entries of each stream): ``XREADGROUP`` (one per partition,
pipelined, on a cluster); for exposures steps 1, 2 and 3 + ``XPENDING``; for the released events
steps 1, 2 and 3 — seven for up to 2 × ``batch`` × partitions entries. Cost of the dedupe state:
an outcome field per entry plus one marker field per counter slot it touches (an experience, a
week), for ``dedupe_ttl_s``.

Attribution
-----------
An event counts for every experience the visitor was exposed to *before* it (``first exposure ts ≤
event ts ≤ first exposure ts + window``), in the variant of their first exposure (sticky: a later
exposure in another variant only bumps ``variant_conflicts``). The window is fixed per visitor at
their first exposure (``attribution_window_s``, a number or a function of the experience key), so
changing it later does not move already-exposed visitors. Events of a visitor with no exposure yet
are not attributed. Exposures with ``visitor_id = None`` (no analytics consent) count in the
``exposures`` / ``anonymous`` entry totals but nothing can be attributed to them and they are not
``visitors``. Holdout exposures are kept apart as variant ``h`` (not in the variant arms, so the
sample-ratio check compares entrants against the configured weights).

Goals: a ``conversion`` counts for its ``goal``; a ``purchase`` counts as goal ``"purchase"`` with
the order value as its value, is de-duplicated per visitor by ``order_id``, and also counts buyers
and repeat buyers (≥ 2 orders) for the repeat-purchase rate.

Ordering across the two streams
-------------------------------
Both streams are read together (one ``XREADGROUP``; one per partition on a cluster). Exposures
are processed as soon as they are read; events wait until every exposure that could precede them
has been *processed* (all three steps) by the group: an event that reached partition ``p`` at time
``t`` is released once (a) this consumer has read exposure partition ``p`` past ``t +
exposure_grace_s`` (or read it to its end) and (b) ``XPENDING`` of that partition shows no exposure
up to then still in flight at another consumer (the visitor's exposures are all in partition ``p``). ``exposure_grace_s`` covers the exposure
writer's in-memory queue (an exposure is decided before, but written after, the click it caused).
An event held longer than ``max_hold_s`` is released anyway. Held events stay in the PEL, so a
crashed consumer re-reads them (its own PEL on start; other consumers' via ``XAUTOCLAIM`` after
``claim_idle_ms``).

Dimensions
----------
Goal counters exist for ``all``, per channel and per segment of the visitor's *first exposure* (the
top segment if its score is ≥ 0.5, else ``none``), so a breakdown rate is converters / visitors of
the same population; and per UTC day: exposures and new visitors by the exposure's day, and
conversion events and *new* converters by the event's day (days sum to the totals).

Journey (CX) aggregates
-----------------------
Besides the per-experience counters, the same script keeps global ones for ``GET /v1/cx``
(:mod:`personalization.measurement.cx`), per UTC ISO week ``w`` (:func:`week_index`, of the event's or the
exposure's ``ts``) and dimension ``all`` / ``ch:<channel>`` / ``seg:<segment>``. Every event kind
and every exposure with a visitor id is *activity*; events and exposures carrying a channel say
the visitor was seen on it. An event's channel dimension is its own channel, else the visitor's
last event channel, else their first exposure's. The segment is the top segment of the visitor's
earliest exposure (``none`` before any exposure is processed; counts already made stay where they
were if an earlier exposure arrives later).

Questions such as "visitors active in weeks a..b" or "customers with ≥ 2 purchases in a..b" are
about *distinct* visitors, so weekly counts cannot just be summed. Each visitor instead contributes

* per distinct active (buying) week ``w``: a term ``act:<p>`` (``buy:<p>``) under ``w``, ``p`` =
  their previous such week or ``-``. Visitors active in [a, b] = Σ over w in [a, b] of the terms
  with p < a (the visitor's first week inside the range) — exact;
* per *minimal* interval [x, y] in which they were seen on two channels (bought twice): a week on
  ≥ 2 channels (with ≥ 2 orders) alone, or two consecutive channel-carrying (buying) weeks with one
  channel each, different (one order each): a term ``multi:<y>:<px>`` (``rep:<y>:<px>``) under x,
  ``px`` = the previous interval's x or ``-``. Intervals of one visitor increase in x and y, so
  the visitor has two channels (orders) in [a, b] iff their first interval with x ≥ a has y ≤ b:
  Σ over x in [a, b] of the terms with y ≤ b and px < a — exact;
* cohort terms ``ret:<k>`` under their first active week c, for each active week c + k
  (``ret:0`` is the cohort size).

The per-visitor weeks (``…:cx`` fields ``w:<w>``, ``…:cxb:<dim>``; under the visitor's hash tag, so
erasing the visitor removes them, while the global terms hold no visitor id) are kept, and a new
week, a new channel in a week or a week's first or second order replaces the visitor's old terms by
new ones, so the result does not depend on the order entries are processed in (a late earlier event
can move a visitor's cohort). Orders are de-duplicated by ``order_id`` as above. Only channel
*transitions* are order-dependent: one is counted (in the later event's week) when an event's
channel differs from the visitor's last event channel, and the last channel and ``ts`` are kept in
the visitor's state. Events are released in ``ts`` order within a batch, so the sequence is exact
unless an event reaches the stream after a later event of the same visitor was processed (a client
clock or a queue delay beyond ``exposure_grace_s``): such a late event counts as activity but
neither makes nor breaks a transition. Transitions come from events only (exposures are written
after the clicks they cause, so their order against events is loose).

Key layout (``<v>`` is the variant index or ``h``; ``<x>`` an experience key)
------------------------------------------------------------------------------
=======================================  ===========================================================
``vary:agg:{<x>}:all``                   hash, ``<v>:visitors`` unique exposed visitors,
                                         ``<v>:exposures`` exposure entries, ``<v>:anonymous``,
                                         ``<v>:conv:<goal>`` unique converters,
                                         ``<v>:events:<goal>`` conversion events,
                                         ``<v>:vsum:<goal>`` / ``<v>:vsumsq:<goal>`` Σ and Σ² of
                                         per-visitor value totals, CUPED ``<v>:xsum|xsumsq|xysum:
                                         <goal>`` (pre-exposure value X), ``<v>:buyers``,
                                         ``<v>:repeat_buyers``, ``<v>:nps|csat|ces:<score>``
                                         histograms, ``variant_conflicts``
``vary:agg:{<x>}:ch:<channel>``          hash, the goal fields above for one first-exposure channel
``vary:agg:{<x>}:seg:<segment>``         hash, the same for one first-exposure top segment
``vary:agg:{<x>}:day:<YYYY-MM-DD>``      hash, the same by UTC day (new visitors/converters)
``vary:agg:{<x>}:ux:<touchpoint>``       hash, ``<v>:tasks``, ``task_ok``, ``abandoned``,
                                         ``clicks``, ``clickers`` (unique), ``page_views``,
                                         ``feedback``, ``orders``, ``revenue``, ``revenue_sq``,
                                         ``sus_n|sus_sum|sus_sumsq``, task durations
                                         ``dur_n|dur_sum|dur_sumsq|dur_lsum|dur_lsumsq`` (ms, ln ms)
                                         and ``dur_b:<i>`` log-spaced histogram buckets
``vary:agg:{<x>}:problems:<v>:<tp>``     set of distinct feedback ``problem`` tags
``vary:agg:{<x>}:dims|goals|tps``        sets indexing the dimension suffixes, goals, touchpoints
``vary:agg:experiences``                 set of experience keys with aggregates
``vary:agg:content:all|day:<day>``       hash, entry id → exposures served outside experiences
``vary:agg:seen:{<tag>}:<hour>``         hash, ``<stream>|<entry id>`` → 1: step-2 markers of one
                                         hash tag (dedupe; expire after ``dedupe_ttl_s``)
``vary:v:{<visitor>}:agg:<day>``         hash, ``<stream>|<entry id>`` → step-1 outcome (msgpack),
                                         ``''`` once applied, ``'!'`` if it raised (dedupe; expires)
``vary:v:{<visitor>}:x``                 hash, experience → ``variant|first ts|deadline|channel|seg``
``vary:v:{<visitor>}:xf``                hash, per-visitor flags: ``<x>|c:<goal>`` converted,
                                         ``<x>|v:<goal>`` value total, ``<x>|x:<goal>`` CUPED X,
                                         ``<x>|np`` orders, ``<x>|k:<tp>`` clicked, ``o:<order>``
``vary:v:{<visitor>}:t``                 hash, goal → lifetime value total (CUPED snapshots it at
                                         first exposure as the pre-exposure value X; a value
                                         stamped before the first exposure but processed after it
                                         is added to X then, so X does not depend on order)
``vary:cx:{w:<w>}:all``                  hash, journey aggregates of ISO week ``<w>``
                                         (:func:`week_index`): ``nps|csat|ces:<score>`` histograms,
                                         ``buy:<p>`` / ``rep:<y>:<px>`` purchase terms, ``act:<p>`` /
                                         ``multi:<y>:<px>`` activity terms, ``ret:<k>`` cohort
                                         counters, ``tr:<from>><to>`` channel transitions
``vary:cx:{w:<w>}:ch:<c>|seg:<s>``       hash, the survey histograms and purchase terms of one
                                         channel / segment
``vary:cx:{idx}:weeks|dims``             sets indexing the weeks and dimensions with CX data
``vary:v:{<visitor>}:cx``                hash, ``seg``, ``seg_ts``, ``xch`` (earliest exposure's
                                         segment, ts, channel), ``ch``, ``ts`` (last event channel),
                                         ``w:<w>`` active week → its channels (``web,ios``; ``""``)
``vary:v:{<visitor>}:cxb:<dim>``         hash, week → orders in it, per CX dimension
=======================================  ===========================================================

Task durations: a ``dur_b:<i>`` bucket holds durations in ``[10^(i/50), 10^((i+1)/50))`` ms
(:data:`DURATION_BUCKETS_PER_DECADE`), so a median read from the histogram is within one bucket
(< 4.7 % relative) of the exact one. Zero durations are ignored (no log, no bucket).

Cluster safety: every call of this module names keys of one slot. Step 1 declares the visitor's
keys (the dynamic ``…:cxb:<dim>`` keys share their tag); step 2 declares every key of its ops;
reads, ``XACK``, ``XPENDING`` and ``XAUTOCLAIM`` name one stream; a partition's two streams share
the tag ``{p}``. On a single node (``cluster=False``) the streams are read with one blocking
``XREADGROUP`` and step-1 chunks mix visitors, which is only valid there.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, ResponseError

from personalization.measurement.events import (
    EVENT_DECODER,
    Abandonment,
    Click,
    Conversion,
    Event,
    Feedback,
    PageView,
    Purchase,
    Survey,
    Task,
)
from personalization.store.partitions import EVENTS, EXPOSURES, all_streams, slot_tag
from personalization.types import EXPOSURE_DECODER, Exposure
from personalization.measurement.ux_cx import sus_score

__all__ = [
    "Aggregator",
    "CHUNK",
    "DEFAULT_GROUP",
    "DEFAULT_WINDOW_S",
    "DEDUPE_TTL_S",
    "STATE_TTL_S",
    "DURATION_BUCKETS_PER_DECADE",
    "NO_SEGMENT",
    "NO_TOUCHPOINT",
    "HOLDOUT_VARIANT",
    "PURCHASE_GOAL",
    "agg_key",
    "duration_bucket",
    "bucket_bounds",
    "top_segment",
    "utc_day",
    "week_index",
    "cx_key",
    "CX_WEEKS_KEY",
    "CX_DIMS_KEY",
    "CLUSTER_POLL_MS",
    "outcome_key",
    "marker_key",
]

log = logging.getLogger("vary.aggregation")

DEFAULT_GROUP = "vary-aggregate"
DEFAULT_WINDOW_S = 7 * 86_400.0
#: How long processed entry ids are remembered; never replay stream entries older than this.
DEDUPE_TTL_S = 30 * 86_400
#: Per-visitor attribution state lives as long as profiles (an experiment must not see a returning
#: visitor as new).
STATE_TTL_S = 400 * 86_400
DURATION_BUCKETS_PER_DECADE = 50
NO_SEGMENT = "none"
NO_TOUCHPOINT = "(none)"
HOLDOUT_VARIANT = "h"
PURCHASE_GOAL = "purchase"
SEGMENT_MIN_SCORE = 0.5
#: Records per script call: ~100 entries keep each call around a millisecond of server time.
CHUNK = 100
#: Set of the week indices (:func:`week_index`) that have journey (CX) aggregates.
CX_WEEKS_KEY = "vary:cx:{idx}:weeks"
#: Set of the journey dimensions (``ch:<channel>``, ``seg:<segment>``) with survey or purchase data.
CX_DIMS_KEY = "vary:cx:{idx}:dims"

_RECORDS_ENCODER = msgspec.json.Encoder()
#: Step-1 outcomes (packed by the script with ``cmsgpack``) and step-2 payloads. msgpack keeps every
#: float64 exact, so a delta computed by step 1 reaches ``HINCRBYFLOAT`` as the very same double.
_OUTCOME_DECODER = msgspec.msgpack.Decoder(list[tuple[str, int, list[list[Any]]]])
_OUTCOME_ENCODER = msgspec.msgpack.Encoder()
#: How long a cluster consumer waits before polling the partitions again when all were empty.
CLUSTER_POLL_MS = 100

_SURVEY_RANGES = {"nps": (0, 10), "csat": (1, 5), "ces": (1, 7)}

# Journey (CX) aggregates, shared by the exposure and event paths of the script below (it defines
# ``ttl``). A visitor's weeks are {week, n, label}: n = 0 (active, no channel), 1 (one channel or
# one purchase: ``label``), 2 (two or more). For a "which visitors did X in [a, b]" count to be exact
# over any range of whole weeks, each visitor contributes one term per distinct week ('<name>:<the
# previous such week>') and one per *minimal* week interval [x, y] that holds two channels / two
# purchases ('<name>:<y>:<previous interval's x>'), both stored under week x; see the module docstring.
_CX_LUA = """
local function cxk(w, dim) return 'vary:cx:{w:' .. w .. '}:' .. dim end

local function cx_load(h)
  local raw = redis.call('HGETALL', h)
  local list = {}
  for i = 1, #raw, 2 do list[#list + 1] = {tonumber(raw[i]), raw[i + 1]} end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  return list
end

local function cx_add(acc, key, field, d)
  local t = acc[key]
  if not t then t = {}; acc[key] = t end
  t[field] = (t[field] or 0) + d
end

local function cx_apply(acc)
  for key, fields in pairs(acc) do
    for field, d in pairs(fields) do
      if d ~= 0 then emit(key, 'z', field, d) end
    end
  end
end

-- '<name>:<previous week>' for every week of the list, under the week's key.
local function cx_distinct(acc, list, dim, name, d)
  local prev = '-'
  for _, e in ipairs(list) do
    cx_add(acc, cxk(e[1], dim), name .. ':' .. prev, d)
    prev = e[1]
  end
end

-- '<name>:<y>:<previous x>' for every minimal interval [x, y] holding two, under x's key: a week
-- with n = 2 alone, or two consecutive weeks with n = 1 and different labels (weeks with n = 0 are
-- skipped). x and y both increase from one interval to the next.
local function cx_pairs(acc, list, dim, name, d)
  local px, last = '-', nil
  for _, e in ipairs(list) do
    local w, n = e[1], e[2]
    if n >= 2 then
      cx_add(acc, cxk(w, dim), name .. ':' .. w .. ':' .. px, d)
      px = w
    elseif n == 1 and last and last[2] == 1 and last[3] ~= e[3] then
      cx_add(acc, cxk(last[1], dim), name .. ':' .. w .. ':' .. px, d)
      px = last[1]
    end
    if n > 0 then last = e end
  end
end

-- Activity terms of one visitor's weeks ({week, 'ch1,ch2' or ''}): distinct active weeks ('act'),
-- multi-channel intervals ('multi'), and the cohort (first week) counters 'ret:<k>'.
local function cx_activity_terms(acc, weeks, d)
  if #weeks == 0 then return end
  local list = {}
  for i, e in ipairs(weeks) do
    local n, label = 0, e[2]
    if label ~= '' then
      local _, commas = string.gsub(label, ',', '')
      n = commas == 0 and 1 or 2
    end
    list[i] = {e[1], n, label}
  end
  cx_distinct(acc, list, 'all', 'act', d)
  cx_pairs(acc, list, 'all', 'multi', d)
  local cohort = list[1][1]
  for _, e in ipairs(list) do cx_add(acc, cxk(cohort, 'all'), 'ret:' .. (e[1] - cohort), d) end
end

-- The visitor (state hash st, holding week fields 'w:<week>') was active in week w on channel ch
-- ('' unknown); cur is the week's field as read (false: a new week). Only a new week or a new
-- channel in a week changes the terms: the old ones are removed and the new ones added, whatever
-- the order. The TTL is refreshed then (at most a few times a week per visitor), not per event.
local function cx_activity(st, w, ch, cur)
  local new
  if not cur then
    new = ch
  elseif ch ~= '' and not string.find(',' .. cur .. ',', ',' .. ch .. ',', 1, true) then
    new = cur == '' and ch or cur .. ',' .. ch
  else
    return
  end
  local raw = redis.call('HGETALL', st)
  local weeks, week, found = {}, tonumber(w), false
  for i = 1, #raw, 2 do
    if string.sub(raw[i], 1, 2) == 'w:' then weeks[#weeks + 1] = {tonumber(string.sub(raw[i], 3)), raw[i + 1]} end
  end
  table.sort(weeks, function(a, b) return a[1] < b[1] end)
  local acc = {}
  cx_activity_terms(acc, weeks, -1)
  for _, e in ipairs(weeks) do
    if e[1] == week then e[2] = new; found = true end
  end
  if not found then
    weeks[#weeks + 1] = {week, new}
    table.sort(weeks, function(a, b) return a[1] < b[1] end)
  end
  cx_activity_terms(acc, weeks, 1)
  cx_apply(acc)
  redis.call('HSET', st, 'w:' .. w, new)
  redis.call('EXPIRE', st, ttl)
  emit('vary:cx:{idx}:weeks', 's', w)
end

-- Purchase terms of one visitor in one dimension ({week, purchases}): distinct buying weeks ('buy')
-- and minimal intervals with two purchases ('rep'); two single-purchase weeks always differ.
local function cx_purchase_terms(acc, weeks, dim, d)
  local list = {}
  for i, e in ipairs(weeks) do list[i] = {e[1], tonumber(e[2]) >= 2 and 2 or 1, e[1]} end
  cx_distinct(acc, list, dim, 'buy', d)
  cx_pairs(acc, list, dim, 'rep', d)
end

local function cx_purchase(tag, w, dim)
  local bk = tag .. 'cxb:' .. dim
  local n = redis.call('HINCRBY', bk, w, 1)
  if n > 2 then return end  -- a third order in a week changes no term (the TTL was set at the second)
  redis.call('EXPIRE', bk, ttl)
  local weeks = cx_load(bk)
  local acc = {}
  cx_purchase_terms(acc, weeks, dim, 1)
  local week = tonumber(w)
  for i, e in ipairs(weeks) do
    if e[1] == week then
      if n == 1 then table.remove(weeks, i) else e[2] = '1' end
      break
    end
  end
  cx_purchase_terms(acc, weeks, dim, -1)
  cx_apply(acc)
end

-- Exposure: the visitor's segment (of their earliest exposure) and activity on its channel.
local function cx_exposure(r)
  local st = 'vary:v:{' .. r[4] .. '}:cx'
  local s = redis.call('HMGET', st, 'seg_ts', 'w:' .. r[13])
  local first = tonumber(s[1] or '')
  if not first or tonumber(r[7]) < first then
    if redis.call('HSET', st, 'seg', r[10], 'seg_ts', r[7], 'xch', r[9]) > 0 then redis.call('EXPIRE', st, ttl) end
  end
  cx_activity(st, r[13], r[9], s[2])
end

-- Event: channel transition, activity, survey histograms and purchases per dimension.
local function cx_event(r)
  local kind, ts, ch, w = r[5], tonumber(r[6]), r[15], r[16]
  local tag = 'vary:v:{' .. r[4] .. '}:'
  local st = tag .. 'cx'
  local s = redis.call('HMGET', st, 'seg', 'ch', 'ts', 'xch', 'w:' .. w)
  if ch ~= '' then
    local last = tonumber(s[3] or '')
    if not last or ts >= last then  -- an event older than the last one seen counts for no transition
      if s[2] and s[2] ~= ch then emit(cxk(w, 'all'), 'i', 'tr:' .. s[2] .. '>' .. ch, 1) end
      if redis.call('HSET', st, 'ch', ch, 'ts', r[6]) > 0 then redis.call('EXPIRE', st, ttl) end
    end
  end
  cx_activity(st, w, ch, s[5])
  local dims = {'all', 'seg:' .. (s[1] or 'none')}
  local dch = ch ~= '' and ch or s[2] or s[4]
  if dch then dims[3] = 'ch:' .. dch end
  local counted = false
  if kind == 'survey' and r[11] ~= 'sus' then
    for _, dim in ipairs(dims) do emit(cxk(w, dim), 'i', r[11] .. ':' .. r[12], 1) end
    counted = true
  elseif kind == 'purchase' then
    for _, dim in ipairs(dims) do cx_purchase(tag, w, dim) end
    counted = true
  end
  if counted then
    for i = 2, #dims do emit('vary:cx:{idx}:dims', 's', dims[i]) end
  end
end
"""

# Step 1, the visitor's outcome: one script per chunk of records (ARGV[1]: a JSON array of records,
# every field a string); ARGV[2] dedupe ttl, [3] state ttl. It reads and writes the visitor's own
# keys only (``vary:v:{<visitor>}:…``) and *emits* every change to a shared aggregate as an op
# {key, kind, field, amount} (kind 'i' HINCRBY, 'z' HINCRBY and HDEL at 0, 'f' HINCRBYFLOAT, 's'
# SADD field), grouped by the key's hash tag: {tag, marked (1 when a group holds a counter), ops}.
# Exposure record: 'x', outcome field, outcome key ('' = anonymous), visitor, experience ('' =
#   content), variant label, ts, deadline, channel, segment, day, entry id, week (CX)
# Event record: 'e', outcome field, outcome key, visitor, kind, ts, day, touchpoint, goal ('' none),
#   value ('' none), then kind-specific: purchase order id | task success, duration, ln duration,
#   bucket | feedback problem | survey metric, score; then channel ('' none), week (CX)
# Returns {status, outcome} per record: status 1 counted now, 2 duplicate order, 3 an outcome stored
# by an earlier run (resumed), 0 already applied, 4 an earlier run raised part-way (nothing to
# apply); outcome is the msgpack of the groups ('' when there is nothing to apply).
_OUTCOME_SCRIPT = """
local dedupe_ttl, ttl = ARGV[2], ARGV[3]
local groups, order

local function emit(key, kind, field, amount)
  local tag = key
  local open = string.find(key, '{', 1, true)
  if open then
    local close = string.find(key, '}', open + 1, true)
    if close and close > open + 1 then tag = string.sub(key, open + 1, close - 1) end
  end
  local g = groups[tag]
  if not g then
    g = {tag, 0, {}}
    groups[tag] = g
    order[#order + 1] = g
  end
  local ops = g[3]
  if kind == 's' then
    ops[#ops + 1] = {key, kind, field}
  else
    g[2] = 1
    ops[#ops + 1] = {key, kind, field, amount}
  end
end
""" + _CX_LUA + """
local function exposure(r)
  if r[4] ~= '' then cx_exposure(r) end
  local visitor, exp, v, ts, deadline, ch, seg, day = r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]
  if exp == '' then
    emit('vary:agg:content:all', 'i', r[12], 1)
    emit('vary:agg:content:day:' .. day, 'i', r[12], 1)
    return 1
  end
  local p = 'vary:agg:{' .. exp .. '}:'
  local all = p .. 'all'
  local dims = {all, p .. 'ch:' .. ch, p .. 'seg:' .. seg, p .. 'day:' .. day}
  for _, k in ipairs(dims) do emit(k, 'i', v .. ':exposures', 1) end
  emit(p .. 'dims', 's', 'ch:' .. ch)
  emit(p .. 'dims', 's', 'seg:' .. seg)
  emit(p .. 'dims', 's', 'day:' .. day)
  emit('vary:agg:experiences', 's', exp)
  if visitor == '' then
    emit(all, 'i', v .. ':anonymous', 1)
    return 1
  end
  local tag = 'vary:v:{' .. visitor .. '}:'
  local state, flags = tag .. 'x', tag .. 'xf'
  local cur = redis.call('HGET', state, exp)
  if not cur then
    redis.call('HSET', state, exp, v .. '|' .. ts .. '|' .. deadline .. '|' .. ch .. '|' .. seg)
    for _, k in ipairs(dims) do emit(k, 'i', v .. ':visitors', 1) end
    local totals = redis.call('HGETALL', tag .. 't')
    for i = 1, #totals, 2 do
      local x = tonumber(totals[i + 1])
      if x ~= 0 then
        redis.call('HSET', flags, exp .. '|x:' .. totals[i], totals[i + 1])
        emit(all, 'f', v .. ':xsum:' .. totals[i], x)
        emit(all, 'f', v .. ':xsumsq:' .. totals[i], x * x)
      end
    end
    if #totals > 0 then redis.call('EXPIRE', flags, ttl) end
  else
    local sv, first, rest = string.match(cur, '^([^|]*)|([^|]*)|[^|]*|(.*)$')
    if sv ~= v then emit(all, 'i', 'variant_conflicts', 1) end
    if tonumber(ts) < tonumber(first) then
      redis.call('HSET', state, exp, sv .. '|' .. ts .. '|' .. deadline .. '|' .. rest)
    end
  end
  redis.call('EXPIRE', state, ttl)
  return 1
end

local function event(r)
  local tag = 'vary:v:{' .. r[4] .. '}:'
  local flags = tag .. 'xf'
  local kind, ts, day, tp, goal = r[5], tonumber(r[6]), r[7], r[8], r[9]
  local value = tonumber(r[10])
  if kind == 'purchase' then
    if redis.call('HSETNX', flags, 'o:' .. r[11], 1) == 0 then return 2 end
    redis.call('EXPIRE', flags, ttl)
  end
  cx_event(r)
  if value and goal ~= '' then
    redis.call('HINCRBYFLOAT', tag .. 't', goal, value)
    redis.call('EXPIRE', tag .. 't', ttl)
  end
  local exps = redis.call('HGETALL', tag .. 'x')
  local attributed = 0
  for i = 1, #exps, 2 do
    local exp = exps[i]
    local v, first, deadline, ch, seg = string.match(exps[i + 1], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    first = tonumber(first)
    if value and goal ~= '' and ts < first then
      -- A pre-exposure value processed after the exposure: add it to the CUPED covariate X now.
      attributed = attributed + 1
      local all = 'vary:agg:{' .. exp .. '}:all'
      local xk = exp .. '|x:' .. goal
      local xold = tonumber(redis.call('HGET', flags, xk) or '0')
      redis.call('HINCRBYFLOAT', flags, xk, value)
      emit(all, 'f', v .. ':xsum:' .. goal, value)
      emit(all, 'f', v .. ':xsumsq:' .. goal, 2 * xold * value + value * value)
      local y = tonumber(redis.call('HGET', flags, exp .. '|v:' .. goal) or '0')
      if y ~= 0 then emit(all, 'f', v .. ':xysum:' .. goal, y * value) end
    elseif ts >= first and ts <= tonumber(deadline) then
      attributed = attributed + 1
      local p = 'vary:agg:{' .. exp .. '}:'
      local all = p .. 'all'
      if goal ~= '' then
        local dims = {all, p .. 'ch:' .. ch, p .. 'seg:' .. seg, p .. 'day:' .. day}
        emit(p .. 'goals', 's', goal)
        emit(p .. 'dims', 's', 'day:' .. day)
        for _, k in ipairs(dims) do emit(k, 'i', v .. ':events:' .. goal, 1) end
        if redis.call('HSETNX', flags, exp .. '|c:' .. goal, 1) == 1 then
          for _, k in ipairs(dims) do emit(k, 'i', v .. ':conv:' .. goal, 1) end
        end
        if value then
          local vk = exp .. '|v:' .. goal
          local old = tonumber(redis.call('HGET', flags, vk) or '0')
          redis.call('HINCRBYFLOAT', flags, vk, value)
          local dsq = 2 * old * value + value * value
          for _, k in ipairs(dims) do
            emit(k, 'f', v .. ':vsum:' .. goal, value)
            emit(k, 'f', v .. ':vsumsq:' .. goal, dsq)
          end
          local x = redis.call('HGET', flags, exp .. '|x:' .. goal)
          if x then emit(all, 'f', v .. ':xysum:' .. goal, tonumber(x) * value) end
        end
      end
      local ux = p .. 'ux:' .. tp
      if kind == 'purchase' then
        local np = redis.call('HINCRBY', flags, exp .. '|np', 1)
        if np == 1 then emit(all, 'i', v .. ':buyers', 1)
        elseif np == 2 then emit(all, 'i', v .. ':repeat_buyers', 1) end
        emit(ux, 'i', v .. ':orders', 1)
        emit(ux, 'f', v .. ':revenue', value)
        emit(ux, 'f', v .. ':revenue_sq', value * value)
        emit(p .. 'tps', 's', tp)
      elseif kind == 'task' then
        emit(ux, 'i', v .. ':tasks', 1)
        if r[11] == '1' then emit(ux, 'i', v .. ':task_ok', 1) end
        local d = tonumber(r[12])
        if d then
          local ld = tonumber(r[13])
          emit(ux, 'i', v .. ':dur_n', 1)
          emit(ux, 'f', v .. ':dur_sum', d)
          emit(ux, 'f', v .. ':dur_sumsq', d * d)
          emit(ux, 'f', v .. ':dur_lsum', ld)
          emit(ux, 'f', v .. ':dur_lsumsq', ld * ld)
          emit(ux, 'i', v .. ':dur_b:' .. r[14], 1)
        end
        emit(p .. 'tps', 's', tp)
      elseif kind == 'abandonment' then
        emit(ux, 'i', v .. ':abandoned', 1)
        emit(p .. 'tps', 's', tp)
      elseif kind == 'click' then
        emit(ux, 'i', v .. ':clicks', 1)
        if redis.call('HSETNX', flags, exp .. '|k:' .. tp, 1) == 1 then
          emit(ux, 'i', v .. ':clickers', 1)
        end
        emit(p .. 'tps', 's', tp)
      elseif kind == 'page_view' then
        emit(ux, 'i', v .. ':page_views', 1)
        emit(p .. 'tps', 's', tp)
      elseif kind == 'feedback' then
        emit(ux, 'i', v .. ':feedback', 1)
        if r[11] ~= '' then emit(p .. 'problems:' .. v .. ':' .. tp, 's', r[11]) end
        emit(p .. 'tps', 's', tp)
      elseif kind == 'survey' then
        if r[11] == 'sus' then
          local s = tonumber(r[12])
          emit(ux, 'i', v .. ':sus_n', 1)
          emit(ux, 'f', v .. ':sus_sum', s)
          emit(ux, 'f', v .. ':sus_sumsq', s * s)
          emit(p .. 'tps', 's', tp)
        else
          emit(all, 'i', v .. ':' .. r[11] .. ':' .. r[12], 1)
        end
      end
    end
  end
  if attributed > 0 then redis.call('EXPIRE', flags, ttl) end
  return 1
end

local out = {}
for i, r in ipairs(cjson.decode(ARGV[1])) do
  local okey, ofield = r[3], r[2]
  local cur = false
  if okey ~= '' then cur = redis.call('HGET', okey, ofield) end
  if cur == '' then
    out[i] = {0, ''}
  elseif cur == '!' then
    out[i] = {4, ''}
  elseif cur then
    out[i] = {3, cur}
  else
    if okey ~= '' then  -- '!' first: a record that raises part-way is never re-run over its own writes
      redis.call('HSET', okey, ofield, '!')
      redis.call('EXPIRE', okey, dedupe_ttl)
    end
    groups, order = {}, {}
    local status
    if r[1] == 'x' then status = exposure(r) else status = event(r) end
    local outcome = ''
    if #order > 0 then outcome = cmsgpack.pack(order) end
    if okey ~= '' then redis.call('HSET', okey, ofield, outcome) end
    out[i] = {status, outcome}
  end
end
return out
"""

# Step 2, the shared aggregates of one hash tag: ARGV[1] msgpack list of {marker key ('' none),
# marker field, ops} in entry order, ARGV[2] dedupe ttl. KEYS declares every key touched (one slot).
# A marked group is applied only if its marker was new (set first, so a group that raises part-way
# is not re-applied over its own writes); SADD-only groups are idempotent and need none.
# Returns 1 (applied) or 0 (already applied) per group.
_APPLY_SCRIPT = """
local ttl = ARGV[2]
local out = {}
for i, g in ipairs(cmsgpack.unpack(ARGV[1])) do
  local new = 1
  if g[1] ~= '' then
    new = redis.call('HSETNX', g[1], g[2], 1)
    if new == 1 then redis.call('EXPIRE', g[1], ttl) end
  end
  if new == 1 then
    for _, op in ipairs(g[3]) do
      local key, kind = op[1], op[2]
      if kind == 'i' then
        redis.call('HINCRBY', key, op[3], op[4])
      elseif kind == 'z' then
        if redis.call('HINCRBY', key, op[3], op[4]) == 0 then redis.call('HDEL', key, op[3]) end
      elseif kind == 'f' then
        redis.call('HINCRBYFLOAT', key, op[3], op[4])
      else
        redis.call('SADD', key, op[3])
      end
    end
  end
  out[i] = new
end
return out
"""



def agg_key(experience: str, suffix: str) -> str:
    """An aggregate key of one experience, e.g. ``agg_key("hero", "all")`` → ``vary:agg:{hero}:all``."""
    return f"vary:agg:{{{experience}}}:{suffix}"


def top_segment(segments: dict[str, float]) -> str:
    """The visitor's top segment: highest score (ties: first name in order) if ≥ 0.5, else ``none``.

    ``|`` is replaced by ``_`` because the visitor state separates its fields with it.
    """
    if not segments:
        return NO_SEGMENT
    name, score = min(segments.items(), key=lambda item: (-item[1], item[0]))
    return name.replace("|", "_") if score >= SEGMENT_MIN_SCORE else NO_SEGMENT


def cx_key(week: int, dimension: str) -> str:
    """A journey aggregate hash: ``cx_key(2818, "ch:web")`` → ``vary:cx:{w:2818}:ch:web``."""
    return f"vary:cx:{{w:{week}}}:{dimension}"


def week_index(ts: float) -> int:
    """The UTC ISO week of a Unix timestamp as a number: weeks since the Monday 1969-12-29.

    A plain integer (not ``2023-W46``) so the script can subtract weeks (cohort age) and compare
    them (range queries); ISO weeks start on Monday and 1970-01-01 was a Thursday, hence the +3.
    """
    return (math.floor(ts / 86_400) + 3) // 7


_DAY_CACHE: dict[int, str] = {}


def utc_day(ts: float) -> str:
    """``YYYY-MM-DD`` of a Unix timestamp, in UTC (cached per day number)."""
    day = int(ts // 86_400)
    text = _DAY_CACHE.get(day)
    if text is None:
        text = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
        if len(_DAY_CACHE) < 10_000:
            _DAY_CACHE[day] = text
    return text


def duration_bucket(ms: float) -> int:
    """Histogram bucket of a positive duration: ``floor(50·log10(ms))`` (bucket 0 holds < 1.047 ms)."""
    return max(0, math.floor(DURATION_BUCKETS_PER_DECADE * math.log10(ms)))


def bucket_bounds(bucket: int) -> tuple[float, float]:
    """The ms range ``[low, high)`` of a duration bucket (bucket 0 starts at 0)."""
    low = 0.0 if bucket == 0 else 10 ** (bucket / DURATION_BUCKETS_PER_DECADE)
    return low, 10 ** ((bucket + 1) / DURATION_BUCKETS_PER_DECADE)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _num(x: float) -> str:
    return repr(float(x))


class _Held:
    """An event read but not yet released (waiting for exposures that may precede it)."""

    __slots__ = ("entry_id", "stream", "partition", "event", "t", "since")

    def __init__(self, entry_id: str, stream: str, partition: int, event: Event, t: float, since: float) -> None:
        self.entry_id = entry_id
        self.stream = stream
        self.partition = partition
        self.event = event
        self.t = t
        self.since = since


class _Entry:
    """One stream entry on its way through the three steps (see the module docstring)."""

    __slots__ = ("stream", "entry_id", "field", "okey", "record", "status", "outcome", "fresh", "ok")

    def __init__(self, stream: str, entry_id: str, visitor_id: str | None, record: list[str]) -> None:
        self.stream = stream
        self.entry_id = entry_id
        self.field = f"{stream}|{entry_id}"
        self.okey = outcome_key(visitor_id, entry_id) if visitor_id else ""
        record[1], record[2] = self.field, self.okey
        self.record = record
        self.status = -1  # step 1 not done
        self.outcome = b""
        self.fresh = False  # a marked group was applied by this run
        self.ok = True


def outcome_key(visitor_id: str, entry_id: str) -> str:
    """The visitor-slot hash holding step-1 outcomes of one UTC day of entries (by stream id time):
    ``vary:v:{<visitor>}:agg:<day number>``; it expires ``dedupe_ttl_s`` after its last write."""
    return f"vary:v:{{{visitor_id}}}:agg:{_id_ms(entry_id) // 86_400_000}"


def marker_key(tag: str, entry_id: str) -> str:
    """The step-2 marker hash of one hash tag and hour of entries: ``vary:agg:seen:{<tag>}:<hour>``."""
    return f"vary:agg:seen:{{{tag}}}:{_id_ms(entry_id) // 3_600_000}"


class Aggregator:
    """One consumer of the ``vary-aggregate`` group over every partition of both streams. Run several
    (distinct ``consumer`` names, any number of processes) to share the work; totals stay exact.

    ``partitions`` is the number of stream partitions the writers use
    (:func:`~personalization.store.partitions.all_streams`). ``cluster`` (default: whether ``redis`` is a
    cluster client) makes every call single-slot: streams are read one partition per
    ``XREADGROUP`` (pipelined, polled every :data:`CLUSTER_POLL_MS` when idle, since one blocking
    read cannot span nodes) and step-1 chunks hold one slot's visitors. On a single node the
    streams are read with one blocking ``XREADGROUP`` and chunks mix visitors.

    Counters: ``processed`` (entries counted), ``duplicates`` (already counted, skipped),
    ``skipped`` (undecodable entries, acknowledged and dropped), ``failed`` (script errors; the entry
    stays pending and is retried after ``claim_idle_ms``).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        group: str = DEFAULT_GROUP,
        consumer: str,
        attribution_window_s: float | Callable[[str], float] = DEFAULT_WINDOW_S,
        batch: int = 500,
        exposure_grace_s: float = 2.0,
        max_hold_s: float = 600.0,
        claim_idle_ms: int = 300_000,
        dedupe_ttl_s: int = DEDUPE_TTL_S,
        state_ttl_s: int = STATE_TTL_S,
        exposure_stream: str = EXPOSURES,
        event_stream: str = EVENTS,
        partitions: int = 1,
        cluster: bool | None = None,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        if partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {partitions}")
        self._redis = redis
        self.group = group
        self.consumer = consumer
        self._window = attribution_window_s
        self.batch = batch
        self.exposure_grace_s = exposure_grace_s
        self.max_hold_s = max_hold_s
        self.claim_idle_ms = claim_idle_ms
        self._dedupe_ttl = int(dedupe_ttl_s)
        self._state_ttl = int(state_ttl_s)
        self.partitions = partitions
        self.cluster = isinstance(redis, RedisCluster) if cluster is None else cluster
        self._xstreams = all_streams(exposure_stream, partitions)
        self._estreams = all_streams(event_stream, partitions)
        self._streams = [*self._xstreams, *self._estreams]
        self._partition = {s: p for p, s in enumerate(self._xstreams)}
        self._partition.update({s: p for p, s in enumerate(self._estreams)})
        self._max_held = 20 * batch
        self._held: dict[tuple[str, str], _Held] = {}
        self._ready = False
        self._recovered = False
        self._sha = ""
        self._apply_sha = ""
        self._max_event_s = [0.0] * partitions
        self._frontier = [0.0] * partitions
        self.processed = 0
        self.duplicates = 0
        self.skipped = 0
        self.failed = 0

    @property
    def streams(self) -> list[str]:
        """Every stream this consumer reads: the exposure partitions, then the event partitions."""
        return list(self._streams)

    # ------------------------------------------------------------------------------ setup

    async def ensure_groups(self) -> None:
        """Create the group on every stream (``MKSTREAM``, from id 0); an existing group is kept."""
        for stream in self._streams:
            try:
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _load_scripts(self) -> None:
        self._sha = _text(await self._redis.script_load(_OUTCOME_SCRIPT))
        self._apply_sha = _text(await self._redis.script_load(_APPLY_SCRIPT))

    async def _setup(self) -> None:
        if not self._ready:
            await self.ensure_groups()
            await self._load_scripts()
            self._ready = True

    @property
    def held(self) -> int:
        """Events read but waiting for the exposures that may precede them."""
        return len(self._held)

    def window_for(self, experience: str) -> float:
        window = self._window
        return float(window(experience) if callable(window) else window)

    # ------------------------------------------------------------------------------ reading

    def _empty(self) -> dict[str, list[tuple[str, dict]]]:
        return {stream: [] for stream in self._streams}

    async def _read(self, streams: dict[str, str], block_ms: int | None) -> dict[str, list[tuple[str, dict]]]:
        """``XREADGROUP`` of ``streams`` (name → id): one call on a single node; on a cluster one call
        per hash tag (a partition's two streams share ``{p}``), pipelined, without ``BLOCK``."""
        out = self._empty()
        if not self.cluster:
            replies = [
                await self._redis.xreadgroup(self.group, self.consumer, streams, count=self.batch, block=block_ms)
            ]
        else:
            by_tag: dict[str, dict[str, str]] = {}
            for stream, start in streams.items():
                by_tag.setdefault(slot_tag(stream), {})[stream] = start
            pipe = self._redis.pipeline(transaction=False)
            for part in by_tag.values():
                pipe.xreadgroup(self.group, self.consumer, part, count=self.batch)
            replies = await pipe.execute()
            if block_ms and not any(replies):
                await asyncio.sleep(min(block_ms, CLUSTER_POLL_MS) / 1000.0)
        deleted: dict[str, list[str]] = {}
        for response in replies:
            if not response:
                continue
            resp3 = isinstance(response, dict)  # RESP3: {stream: [[(id, fields), ...]]}
            items: Iterable[Any] = response.items() if resp3 else response
            for stream, entries in items:
                if resp3:
                    entries = entries[0] if entries else []
                name = _text(stream)
                out[name] = [(_text(eid), fields) for eid, fields in entries if fields is not None]
                gone = [_text(eid) for eid, fields in entries if fields is None]
                if gone:  # pending entries trimmed from the stream: nothing to count, stop tracking them
                    deleted[name] = gone
        for name, ids in deleted.items():
            await self._redis.xack(name, self.group, *ids)
        return out

    async def _recover_own_pending(self) -> dict[str, list[tuple[str, dict]]]:
        """Entries delivered to this consumer name before a restart and never acknowledged."""
        found = self._empty()
        cursors = {stream: "0" for stream in self._streams}
        while cursors:
            got = await self._read(dict(cursors), None)
            for stream in list(cursors):
                entries = got.get(stream, [])
                if not entries:
                    del cursors[stream]
                    continue
                found[stream].extend(entries)
                cursors[stream] = entries[-1][0]
        return found

    async def claim_stale(self) -> int:
        """``XAUTOCLAIM`` entries idle for ``claim_idle_ms`` at any consumer (a crashed one) on every
        partition and process them; returns how many were processed. An entry its dead owner had
        taken part-way through the steps is completed from its stored outcome, so it counts once."""
        await self._setup()
        claimed = self._empty()
        for stream in self._streams:
            start = "0-0"
            while True:
                reply = await self._redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start_id=start, count=self.batch
                )
                start = _text(reply[0])
                claimed[stream].extend((_text(eid), f) for eid, f in reply[1] if f is not None)
                if start == "0-0":
                    break
        if not any(claimed.values()):
            return 0
        caught_up = [False] * self.partitions
        return await self._process(claimed, caught_up=caught_up, read_at=time.time())

    # ------------------------------------------------------------------------------ processing

    async def run_once(self, block_ms: int = 0) -> int:
        """Read one batch of each stream, count it, and return how many entries were processed
        (duplicates included). ``block_ms = 0`` does not block (unlike Redis's ``BLOCK 0``).

        The first call also re-reads this consumer's own unacknowledged entries (a restart)."""
        await self._setup()
        entries = self._empty()
        if not self._recovered:
            entries = await self._recover_own_pending()
            self._recovered = True
        streams = {stream: ">" for stream in self._xstreams}
        if len(self._held) < self._max_held:
            streams.update({stream: ">" for stream in self._estreams})
        read_at = time.time()
        fresh = await self._read(streams, block_ms if block_ms > 0 else None)
        for stream, got in fresh.items():
            entries[stream].extend(got)
        caught_up = []
        for p, stream in enumerate(self._xstreams):
            got = fresh[stream]
            caught_up.append(len(got) < self.batch)
            if got and not caught_up[p]:
                self._frontier[p] = (_id_ms(got[-1][0]) - 1) / 1000.0
        return await self._process(entries, caught_up=caught_up, read_at=read_at)

    async def _process(
        self, entries: dict[str, list[tuple[str, dict]]], *, caught_up: list[bool], read_at: float
    ) -> int:
        done = 0
        # Exposures first, oldest first.
        exposures: list[tuple[str, str, Exposure]] = []
        poison: dict[str, list[str]] = {}
        for stream in self._xstreams:
            for entry_id, fields in entries[stream]:
                try:
                    exposures.append((stream, entry_id, EXPOSURE_DECODER.decode(_field(fields))))
                except (msgspec.DecodeError, KeyError) as exc:
                    log.error("undecodable exposure %s: %s", entry_id, exc)
                    poison.setdefault(stream, []).append(entry_id)
        now = time.monotonic()
        for stream in self._estreams:
            p = self._partition[stream]
            for entry_id, fields in entries[stream]:
                if (stream, entry_id) in self._held:
                    continue
                try:
                    event = EVENT_DECODER.decode(_field(fields))
                except (msgspec.DecodeError, KeyError) as exc:
                    log.error("undecodable event %s: %s", entry_id, exc)
                    poison.setdefault(stream, []).append(entry_id)
                    continue
                t = _id_ms(entry_id) / 1000.0
                self._max_event_s[p] = max(self._max_event_s[p], t)
                self._held[(stream, entry_id)] = _Held(entry_id, stream, p, event, t, now)
        if poison:  # before XPENDING below, so they do not hold events
            pipe = self._redis.pipeline(transaction=False)
            for stream, ids in poison.items():
                pipe.xack(stream, self.group, *ids)
            await pipe.execute()
            bad = sum(len(ids) for ids in poison.values())
            self.skipped += bad
            done += bad
        exposures.sort(key=lambda item: (item[2].ts, item[1]))
        items = [self._exposure_entry(stream, eid, x) for stream, eid, x in exposures]
        pending_min = await self._run(items, with_pending=True)
        done += len(items)
        # Which held events can no longer be preceded by an exposure we have not processed? A
        # visitor's exposures and events share a partition number, so each partition has its own.
        frontier = [
            max(read_at, self._max_event_s[p]) if caught_up[p] else self._frontier[p]
            for p in range(self.partitions)
        ]
        for p, pending in pending_min.items():
            frontier[p] = min(frontier[p], (pending - 1) / 1000.0)
        grace = self.exposure_grace_s
        release = [
            h for h in self._held.values()
            if h.t + grace <= frontier[h.partition] or now - h.since > self.max_hold_s
        ]
        for h in release:
            if not (h.t + grace <= frontier[h.partition]):
                log.warning("event %s held %.0f s waiting for exposures; released", h.entry_id, now - h.since)
            del self._held[(h.stream, h.entry_id)]
        release.sort(key=lambda h: (h.event.ts or h.t, h.entry_id))
        items = [self._event_entry(h.stream, h.entry_id, h.event) for h in release]
        await self._run(items, with_pending=False)
        done += len(items)
        return done

    async def _run(self, items: list[_Entry], *, with_pending: bool) -> dict[int, int]:
        """The three steps over ``items`` (in order), three pipelined round trips: the outcomes
        (step 1), the shared aggregates (step 2), then compaction + ``XACK`` (step 3), with ``XPENDING``
        of every exposure partition when asked. Returns partition → smallest exposure id (ms) still
        pending in the group."""
        if items:
            await self._outcomes(items)
            await self._apply(items)
        pipe = self._redis.pipeline(transaction=False)
        acks: dict[str, list[str]] = {}
        for item in items:
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
        if with_pending:
            for stream in self._xstreams:
                pipe.xpending(stream, self.group)
        if not len(pipe):
            return {}
        results = await pipe.execute()
        if not with_pending:
            return {}
        pending: dict[int, int] = {}
        for p, summary in enumerate(results[-len(self._xstreams):]):
            if summary and summary.get("pending"):
                pending[p] = _id_ms(_text(summary["min"]))
        return pending

    def _chunks(self, items: list[_Entry]) -> list[list[_Entry]]:
        """Step-1 calls: :data:`CHUNK` records each, of one slot on a cluster, in entry order."""
        if not self.cluster:
            return [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
        by_slot: dict[int, list[_Entry]] = {}
        for item in items:
            by_slot.setdefault(key_slot(item.okey.encode()) if item.okey else -1, []).append(item)
        return [group[i : i + CHUNK] for group in by_slot.values() for i in range(0, len(group), CHUNK)]

    async def _outcomes(self, items: list[_Entry]) -> None:
        """Step 1: every entry's outcome, computed once in its visitor's slot (stored, or returned as
        stored). A chunk that fails is re-run one record per call; a record that fails alone stays
        pending (``status`` stays -1)."""
        chunks = self._chunks(items)
        results = await self._run_scripts(self._outcome_call, chunks)
        retry = []
        for chunk, result in zip(chunks, results):
            if isinstance(result, Exception):
                retry.append(chunk)
            else:
                self._take_outcomes(chunk, result)
        if retry:
            log.error("aggregation script failed on a chunk (%s); retrying its records one by one",
                      next(r for r in results if isinstance(r, Exception)))
            singles = [[item] for chunk in retry for item in chunk]
            for single, result in zip(singles, await self._run_scripts(self._outcome_call, singles)):
                if isinstance(result, Exception):
                    log.error("aggregating %s failed, left pending: %s", single[0].field, result)
                else:
                    self._take_outcomes(single, result)

    @staticmethod
    def _take_outcomes(chunk: list[_Entry], result: list[Any]) -> None:
        for item, (status, outcome) in zip(chunk, result):
            item.status = int(status)
            item.outcome = outcome if isinstance(outcome, bytes) else outcome.encode()

    def _outcome_call(self, pipe: Any, chunk: list[_Entry]) -> None:
        keys: list[str] = []
        if self.cluster:  # declared for routing; the script touches these visitors' keys only
            seen: set[str] = set()
            for item in chunk:
                if item.okey and item.okey not in seen:
                    seen.add(item.okey)
                    base = item.okey[: item.okey.index("}:") + 2]
                    keys += [item.okey, base + "x", base + "xf", base + "t", base + "cx"]
        # execute_command: redis-py's cluster pipeline blocks its ``evalsha`` method, not the command.
        pipe.execute_command(
            "EVALSHA", self._sha, len(keys), *keys, _RECORDS_ENCODER.encode([item.record for item in chunk]),
            self._dedupe_ttl, self._state_ttl,
        )

    async def _apply(self, items: list[_Entry]) -> None:
        """Step 2: each outcome's groups, one call per hash tag (:data:`CHUNK` entries at most), in entry
        order so float sums add up in the same order as before. A call that fails is re-run one group
        per call (markers make that safe); an entry whose group still fails stays pending."""
        by_tag: dict[str, list[tuple[_Entry, list[Any]]]] = {}
        for item in items:
            if item.status not in (1, 3) or not item.outcome:
                continue
            for tag, marked, ops in _OUTCOME_DECODER.decode(item.outcome):
                marker = marker_key(tag, item.entry_id) if marked else ""
                by_tag.setdefault(tag, []).append((item, [marker, item.field, ops]))
        calls = [group[i : i + CHUNK] for group in by_tag.values() for i in range(0, len(group), CHUNK)]
        results = await self._run_scripts(self._apply_call, calls)
        retry = []
        for call, result in zip(calls, results):
            if isinstance(result, Exception):
                retry.append(call)
            else:
                self._take_applied(call, result)
        if retry:
            log.error("applying aggregates failed on a call (%s); retrying its entries one by one",
                      next(r for r in results if isinstance(r, Exception)))
            singles = [[group] for call in retry for group in call]
            for single, result in zip(singles, await self._run_scripts(self._apply_call, singles)):
                if isinstance(result, Exception):
                    single[0][0].ok = False
                    log.error("applying %s failed, left pending: %s", single[0][0].field, result)
                else:
                    self._take_applied(single, result)

    @staticmethod
    def _take_applied(call: list[tuple[_Entry, list[Any]]], result: list[Any]) -> None:
        for (item, group), applied in zip(call, result):
            if group[0] and int(applied):
                item.fresh = True

    def _apply_call(self, pipe: Any, call: list[tuple[_Entry, list[Any]]]) -> None:
        keys: dict[str, None] = {}
        for _, (marker, _, ops) in call:
            if marker:
                keys[marker] = None
            for op in ops:
                keys[op[0]] = None
        payload = _OUTCOME_ENCODER.encode([group for _, group in call])
        pipe.execute_command("EVALSHA", self._apply_sha, len(keys), *keys, payload, self._dedupe_ttl)

    async def _run_scripts(self, add: Callable[[Any, Any], None], calls: list[Any]) -> list[Any]:
        """Pipeline one script call per element of ``calls``; reload the scripts once if the server
        lost them (``SCRIPT FLUSH``, a restart: both steps are idempotent, so re-running is safe)."""
        if not calls:
            return []

        async def execute() -> list[Any]:
            pipe = self._redis.pipeline(transaction=False)
            for call in calls:
                add(pipe, call)
            return await pipe.execute(raise_on_error=False)

        results = await execute()
        if any(isinstance(r, NoScriptError) for r in results):
            await self._load_scripts()
            results = await execute()
        return results

    def _exposure_entry(self, stream: str, entry_id: str, x: Exposure) -> _Entry:
        experience = x.experience or ""
        deadline = x.ts + self.window_for(experience) if experience else x.ts
        return _Entry(stream, entry_id, x.visitor_id, [
            "x", "", "", x.visitor_id or "", experience,
            HOLDOUT_VARIANT if x.holdout else str(x.variant), _num(x.ts), _num(deadline), x.channel,
            top_segment(x.segments), utc_day(x.ts), x.entry_id, str(week_index(x.ts)),
        ])

    def _event_entry(self, stream: str, entry_id: str, e: Event) -> _Entry:
        ts = e.ts if e.ts is not None else _id_ms(entry_id) / 1000.0
        goal, value = "", ""
        extra = ["", "", "", ""]
        if isinstance(e, Conversion):
            kind, goal = "conversion", e.goal
            value = "" if e.value is None else _num(e.value)
        elif isinstance(e, Purchase):
            kind, goal, value = "purchase", PURCHASE_GOAL, _num(e.value)
            extra[0] = e.order_id
        elif isinstance(e, Task):
            kind = "task"
            extra[0] = "1" if e.success else "0"
            if e.duration_ms:  # 0 or None: no usable time
                ms = e.duration_ms
                extra[1:] = [str(ms), _num(math.log(ms)), str(duration_bucket(ms))]
        elif isinstance(e, Abandonment):
            kind = "abandonment"
        elif isinstance(e, Click):
            kind = "click"
        elif isinstance(e, PageView):
            kind = "page_view"
        elif isinstance(e, Feedback):
            kind = "feedback"
            extra[0] = e.problem or ""
        elif isinstance(e, Survey):
            score = _survey_score(e)
            if score is None:  # acknowledged and marked, but nothing to count
                log.warning("survey %s has no usable %s score; ignored", entry_id, e.metric)
                kind = "other"
            else:
                kind = "survey"
                extra[:2] = [e.metric, score]
        else:  # identify: nothing to aggregate, but the entry is still marked and acknowledged
            kind = "other"
        return _Entry(stream, entry_id, e.visitor_id, [
            "e", "", "", e.visitor_id, kind, _num(ts), utc_day(ts),
            e.touchpoint or NO_TOUCHPOINT, goal, value, *extra, e.channel or "", str(week_index(ts)),
        ])

    async def run_forever(
        self, stop: asyncio.Event, *, block_ms: int = 1000, claim_every_s: float = 60.0
    ) -> None:
        """Process until ``stop`` is set. Redis errors are logged and retried with a 1 s pause; stale
        entries of crashed consumers are claimed every ``claim_every_s``."""
        next_claim = time.monotonic() + claim_every_s
        while not stop.is_set():
            try:
                await self.run_once(block_ms=block_ms)
                if time.monotonic() >= next_claim:
                    next_claim = time.monotonic() + claim_every_s
                    await self.claim_stale()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis down, a timeout …: keep the consumer alive
                log.exception("aggregation round failed; retrying in 1 s")
                self._ready = False
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass


def _field(fields: dict) -> bytes | str:
    data = fields.get(b"data")
    if data is None:
        data = fields["data"]
    return data


def _survey_score(e: Survey) -> str | None:
    """The stored score: an integer for NPS/CSAT/CES histograms (rounded half up), 0–100 for SUS."""
    if e.metric == "sus":
        if e.answers is not None:
            return _num(sus_score(e.answers))
        return None if e.score is None or not 0 <= e.score <= 100 else _num(e.score)
    if e.score is None:
        return None
    low, high = _SURVEY_RANGES[e.metric]
    score = math.floor(e.score + 0.5)
    return str(score) if low <= score <= high else None
