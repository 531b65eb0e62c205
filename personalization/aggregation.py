"""Exact, replay-safe experiment aggregates: a consumer group over ``vary:exposures`` + ``vary:events``.

Results pages need counts over millions of exposures and events; reading raw stream entries per
request would not scale, and approximate counters would not be *exact*. So one consumer group
(default ``vary-aggregate``) folds every stream entry, once, into small per-experience hashes, and
:mod:`personalization.results` turns those sums into statistics.

How an entry is processed
-------------------------
Entries are handed to one Lua script in chunks of :data:`CHUNK` records (a JSON array, so the client
packs 8 arguments per hundred entries rather than ~20 per entry); all chunks of a batch go in one
pipelined round trip. For each entry the script, atomically with the rest of its chunk:

1. Sets a dedupe marker (``HSETNX``) for the stream entry id (in a per-minute hash that expires after
   ``dedupe_ttl_s``) and skips the entry if it was already there — so re-reading an entry (a
   ``XAUTOCLAIM`` race, or an operator resetting the group with ``XGROUP SETID … 0``) changes
   nothing. Replaying entries older than ``dedupe_ttl_s`` *would* count them again: keep the streams
   trimmed to that horizon (``XTRIM … MINID``).
2. Acknowledges (``XACK``) the entry itself, so "counted" and "acknowledged" never disagree (no crash window).
3. Updates the visitor's attribution state and the aggregate counters (below).

A chunk that errors part-way (a wrongly typed key, say) is re-run one record per call: records it
had counted are now duplicates and the rest are counted. Scripts do not roll back, so the record
that raised keeps its marker and whatever it had written before the error (logged); a record that
fails before its marker (``OOM``, ``READONLY``) stays pending and is retried.

Round trips per batch (``batch`` entries of each stream): ``XREADGROUP``; the exposure chunks +
``XPENDING``; the released event chunks — three for up to 2 × ``batch`` entries.

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
Both streams are read with one ``XREADGROUP``. Exposures are processed as soon as they are read;
events wait until every exposure that could precede them has been *processed* by the group: an
event that reached its stream at time ``t`` is released once (a) this consumer has read the
exposure stream past ``t + exposure_grace_s`` (or read it to its end) and (b) ``XPENDING`` shows no
exposure up to then still in flight at another consumer. ``exposure_grace_s`` covers the exposure
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
(:mod:`personalization.cx`), per UTC ISO week ``w`` (:func:`week_index`, of the event's or the
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
``vary:agg:seen:<stream>:<minute>``      hash, processed entry ids (dedupe; expires)
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

The scripts touch keys they cannot declare up front (the aggregate keys of the experiences found in
the visitor's state), so they need a single-shard Redis / Valkey (not Redis Cluster).
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
from redis.exceptions import NoScriptError, ResponseError

from personalization.events import (
    EVENT_DECODER,
    EVENT_STREAM,
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
from personalization.exposures import EXPOSURE_STREAM
from personalization.types import EXPOSURE_DECODER, Exposure
from personalization.ux_cx import sus_score

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
      if d ~= 0 and redis.call('HINCRBY', key, field, d) == 0 then redis.call('HDEL', key, field) end
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
  redis.call('SADD', 'vary:cx:{idx}:weeks', w)
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
      if s[2] and s[2] ~= ch then redis.call('HINCRBY', cxk(w, 'all'), 'tr:' .. s[2] .. '>' .. ch, 1) end
      if redis.call('HSET', st, 'ch', ch, 'ts', r[6]) > 0 then redis.call('EXPIRE', st, ttl) end
    end
  end
  cx_activity(st, w, ch, s[5])
  local dims = {'all', 'seg:' .. (s[1] or 'none')}
  local dch = ch ~= '' and ch or s[2] or s[4]
  if dch then dims[3] = 'ch:' .. dch end
  local counted = false
  if kind == 'survey' and r[11] ~= 'sus' then
    for _, dim in ipairs(dims) do redis.call('HINCRBY', cxk(w, dim), r[11] .. ':' .. r[12], 1) end
    counted = true
  elseif kind == 'purchase' then
    for _, dim in ipairs(dims) do cx_purchase(tag, w, dim) end
    counted = true
  end
  if counted then redis.call('SADD', 'vary:cx:{idx}:dims', unpack(dims, 2)) end
end
"""

# One script processes a chunk of entries (ARGV[1]: a JSON array of records, every field a string).
# ARGV[2] group, [3] dedupe ttl, [4] state ttl, [5] exposure stream, [6] event stream.
# Exposure record: 'x', id, dedupe key, visitor ('' = anonymous), experience ('' = content), variant
#   label, ts, deadline, channel, segment, day, entry id, week (CX)
# Event record: 'e', id, dedupe key, visitor, kind, ts, day, touchpoint, goal ('' none), value
#   ('' none), then kind-specific: purchase order id | task success, duration, ln duration, bucket |
#   feedback problem | survey metric, score; then channel ('' none), week (CX)
# Returns one status per record: 0 already counted, 1 counted, 2 duplicate order.
_SCRIPT = """
local group, dedupe_ttl, ttl = ARGV[2], ARGV[3], ARGV[4]
""" + _CX_LUA + """
local function mark(stream, dedupe, id)
  local new = redis.call('HSETNX', dedupe, id, 1) == 1
  if new then redis.call('EXPIRE', dedupe, dedupe_ttl) end
  redis.call('XACK', stream, group, id)
  return new
end

local function exposure(r)
  if not mark(ARGV[5], r[3], r[2]) then return 0 end
  if r[4] ~= '' then cx_exposure(r) end
  local visitor, exp, v, ts, deadline, ch, seg, day = r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]
  if exp == '' then
    redis.call('HINCRBY', 'vary:agg:content:all', r[12], 1)
    redis.call('HINCRBY', 'vary:agg:content:day:' .. day, r[12], 1)
    return 1
  end
  local p = 'vary:agg:{' .. exp .. '}:'
  local all = p .. 'all'
  local dims = {all, p .. 'ch:' .. ch, p .. 'seg:' .. seg, p .. 'day:' .. day}
  for _, k in ipairs(dims) do redis.call('HINCRBY', k, v .. ':exposures', 1) end
  redis.call('SADD', p .. 'dims', 'ch:' .. ch, 'seg:' .. seg, 'day:' .. day)
  redis.call('SADD', 'vary:agg:experiences', exp)
  if visitor == '' then
    redis.call('HINCRBY', all, v .. ':anonymous', 1)
    return 1
  end
  local tag = 'vary:v:{' .. visitor .. '}:'
  local state, flags = tag .. 'x', tag .. 'xf'
  local cur = redis.call('HGET', state, exp)
  if not cur then
    redis.call('HSET', state, exp, v .. '|' .. ts .. '|' .. deadline .. '|' .. ch .. '|' .. seg)
    for _, k in ipairs(dims) do redis.call('HINCRBY', k, v .. ':visitors', 1) end
    local totals = redis.call('HGETALL', tag .. 't')
    for i = 1, #totals, 2 do
      local x = tonumber(totals[i + 1])
      if x ~= 0 then
        redis.call('HSET', flags, exp .. '|x:' .. totals[i], totals[i + 1])
        redis.call('HINCRBYFLOAT', all, v .. ':xsum:' .. totals[i], x)
        redis.call('HINCRBYFLOAT', all, v .. ':xsumsq:' .. totals[i], x * x)
      end
    end
    if #totals > 0 then redis.call('EXPIRE', flags, ttl) end
  else
    local sv, first, rest = string.match(cur, '^([^|]*)|([^|]*)|[^|]*|(.*)$')
    if sv ~= v then redis.call('HINCRBY', all, 'variant_conflicts', 1) end
    if tonumber(ts) < tonumber(first) then
      redis.call('HSET', state, exp, sv .. '|' .. ts .. '|' .. deadline .. '|' .. rest)
    end
  end
  redis.call('EXPIRE', state, ttl)
  return 1
end

local function event(r)
  if not mark(ARGV[6], r[3], r[2]) then return 0 end
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
      redis.call('HINCRBYFLOAT', all, v .. ':xsum:' .. goal, value)
      redis.call('HINCRBYFLOAT', all, v .. ':xsumsq:' .. goal, 2 * xold * value + value * value)
      local y = tonumber(redis.call('HGET', flags, exp .. '|v:' .. goal) or '0')
      if y ~= 0 then redis.call('HINCRBYFLOAT', all, v .. ':xysum:' .. goal, y * value) end
    elseif ts >= first and ts <= tonumber(deadline) then
      attributed = attributed + 1
      local p = 'vary:agg:{' .. exp .. '}:'
      local all = p .. 'all'
      if goal ~= '' then
        local dims = {all, p .. 'ch:' .. ch, p .. 'seg:' .. seg, p .. 'day:' .. day}
        redis.call('SADD', p .. 'goals', goal)
        redis.call('SADD', p .. 'dims', 'day:' .. day)
        for _, k in ipairs(dims) do redis.call('HINCRBY', k, v .. ':events:' .. goal, 1) end
        if redis.call('HSETNX', flags, exp .. '|c:' .. goal, 1) == 1 then
          for _, k in ipairs(dims) do redis.call('HINCRBY', k, v .. ':conv:' .. goal, 1) end
        end
        if value then
          local vk = exp .. '|v:' .. goal
          local old = tonumber(redis.call('HGET', flags, vk) or '0')
          redis.call('HINCRBYFLOAT', flags, vk, value)
          local dsq = 2 * old * value + value * value
          for _, k in ipairs(dims) do
            redis.call('HINCRBYFLOAT', k, v .. ':vsum:' .. goal, value)
            redis.call('HINCRBYFLOAT', k, v .. ':vsumsq:' .. goal, dsq)
          end
          local x = redis.call('HGET', flags, exp .. '|x:' .. goal)
          if x then redis.call('HINCRBYFLOAT', all, v .. ':xysum:' .. goal, tonumber(x) * value) end
        end
      end
      local ux = p .. 'ux:' .. tp
      if kind == 'purchase' then
        local np = redis.call('HINCRBY', flags, exp .. '|np', 1)
        if np == 1 then redis.call('HINCRBY', all, v .. ':buyers', 1)
        elseif np == 2 then redis.call('HINCRBY', all, v .. ':repeat_buyers', 1) end
        redis.call('HINCRBY', ux, v .. ':orders', 1)
        redis.call('HINCRBYFLOAT', ux, v .. ':revenue', value)
        redis.call('HINCRBYFLOAT', ux, v .. ':revenue_sq', value * value)
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'task' then
        redis.call('HINCRBY', ux, v .. ':tasks', 1)
        if r[11] == '1' then redis.call('HINCRBY', ux, v .. ':task_ok', 1) end
        local d = tonumber(r[12])
        if d then
          local ld = tonumber(r[13])
          redis.call('HINCRBY', ux, v .. ':dur_n', 1)
          redis.call('HINCRBYFLOAT', ux, v .. ':dur_sum', d)
          redis.call('HINCRBYFLOAT', ux, v .. ':dur_sumsq', d * d)
          redis.call('HINCRBYFLOAT', ux, v .. ':dur_lsum', ld)
          redis.call('HINCRBYFLOAT', ux, v .. ':dur_lsumsq', ld * ld)
          redis.call('HINCRBY', ux, v .. ':dur_b:' .. r[14], 1)
        end
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'abandonment' then
        redis.call('HINCRBY', ux, v .. ':abandoned', 1)
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'click' then
        redis.call('HINCRBY', ux, v .. ':clicks', 1)
        if redis.call('HSETNX', flags, exp .. '|k:' .. tp, 1) == 1 then
          redis.call('HINCRBY', ux, v .. ':clickers', 1)
        end
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'page_view' then
        redis.call('HINCRBY', ux, v .. ':page_views', 1)
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'feedback' then
        redis.call('HINCRBY', ux, v .. ':feedback', 1)
        if r[11] ~= '' then redis.call('SADD', p .. 'problems:' .. v .. ':' .. tp, r[11]) end
        redis.call('SADD', p .. 'tps', tp)
      elseif kind == 'survey' then
        if r[11] == 'sus' then
          local s = tonumber(r[12])
          redis.call('HINCRBY', ux, v .. ':sus_n', 1)
          redis.call('HINCRBYFLOAT', ux, v .. ':sus_sum', s)
          redis.call('HINCRBYFLOAT', ux, v .. ':sus_sumsq', s * s)
          redis.call('SADD', p .. 'tps', tp)
        else
          redis.call('HINCRBY', all, v .. ':' .. r[11] .. ':' .. r[12], 1)
        end
      end
    end
  end
  if attributed > 0 then redis.call('EXPIRE', flags, ttl) end
  return 1
end

local out = {}
for i, r in ipairs(cjson.decode(ARGV[1])) do
  if r[1] == 'x' then out[i] = exposure(r) else out[i] = event(r) end
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

    __slots__ = ("entry_id", "event", "t", "since")

    def __init__(self, entry_id: str, event: Event, t: float, since: float) -> None:
        self.entry_id = entry_id
        self.event = event
        self.t = t
        self.since = since


class Aggregator:
    """One consumer of the ``vary-aggregate`` group. Run several (distinct ``consumer`` names) to share
    the work; totals stay exact.

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
        exposure_stream: str = EXPOSURE_STREAM,
        event_stream: str = EVENT_STREAM,
    ) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
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
        self._xs = exposure_stream
        self._es = event_stream
        self._max_held = 20 * batch
        self._held: dict[str, _Held] = {}
        self._ready = False
        self._recovered = False
        self._sha = ""
        self._max_event_s = 0.0
        self._exposure_frontier = 0.0
        self.processed = 0
        self.duplicates = 0
        self.skipped = 0
        self.failed = 0

    # ------------------------------------------------------------------------------ setup

    async def ensure_groups(self) -> None:
        """Create the group on both streams (``MKSTREAM``, from id 0); an existing group is kept."""
        for stream in (self._xs, self._es):
            try:
                await self._redis.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def _load_scripts(self) -> None:
        self._sha = _text(await self._redis.script_load(_SCRIPT))

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

    async def _read(self, streams: dict[str, str], block_ms: int | None) -> dict[str, list[tuple[str, dict]]]:
        response = await self._redis.xreadgroup(
            self.group, self.consumer, streams, count=self.batch, block=block_ms
        )
        out: dict[str, list[tuple[str, dict]]] = {self._xs: [], self._es: []}
        if not response:
            return out
        resp3 = isinstance(response, dict)  # RESP3: {stream: [[(id, fields), ...]]}
        items: Iterable[Any] = response.items() if resp3 else response
        for stream, entries in items:
            if resp3:
                entries = entries[0] if entries else []
            name = _text(stream)
            out[name] = [(_text(eid), fields) for eid, fields in entries if fields is not None]
            deleted = [_text(eid) for eid, fields in entries if fields is None]
            if deleted:  # pending entries trimmed from the stream: nothing to count, stop tracking them
                await self._redis.xack(name, self.group, *deleted)
        return out

    async def _recover_own_pending(self) -> dict[str, list[tuple[str, dict]]]:
        """Entries delivered to this consumer name before a restart and never acknowledged."""
        found: dict[str, list[tuple[str, dict]]] = {self._xs: [], self._es: []}
        cursors = {self._xs: "0", self._es: "0"}
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
        """``XAUTOCLAIM`` entries idle for ``claim_idle_ms`` at any consumer (a crashed one) and process
        them; returns how many were processed."""
        await self._setup()
        claimed: dict[str, list[tuple[str, dict]]] = {self._xs: [], self._es: []}
        for stream in (self._xs, self._es):
            start = "0-0"
            while True:
                reply = await self._redis.xautoclaim(
                    stream, self.group, self.consumer, self.claim_idle_ms, start_id=start, count=self.batch
                )
                start = _text(reply[0])
                claimed[stream].extend((_text(eid), f) for eid, f in reply[1] if f is not None)
                if start == "0-0":
                    break
        if not claimed[self._xs] and not claimed[self._es]:
            return 0
        return await self._process(claimed, exposures_caught_up=False, read_at=time.time())

    # ------------------------------------------------------------------------------ processing

    async def run_once(self, block_ms: int = 0) -> int:
        """Read one batch of each stream (one ``XREADGROUP``), count it, and return how many entries were
        processed (duplicates included). ``block_ms = 0`` does not block (unlike Redis's ``BLOCK 0``).

        The first call also re-reads this consumer's own unacknowledged entries (a restart)."""
        await self._setup()
        entries: dict[str, list[tuple[str, dict]]] = {self._xs: [], self._es: []}
        if not self._recovered:
            entries = await self._recover_own_pending()
            self._recovered = True
        streams = {self._xs: ">"}
        if len(self._held) < self._max_held:
            streams[self._es] = ">"
        read_at = time.time()
        fresh = await self._read(streams, block_ms if block_ms > 0 else None)
        for stream, got in fresh.items():
            entries[stream].extend(got)
        caught_up = len(fresh[self._xs]) < self.batch
        if not caught_up:
            self._exposure_frontier = (_id_ms(fresh[self._xs][-1][0]) - 1) / 1000.0
        return await self._process(entries, exposures_caught_up=caught_up, read_at=read_at)

    async def _process(
        self, entries: dict[str, list[tuple[str, dict]]], *, exposures_caught_up: bool, read_at: float
    ) -> int:
        done = 0
        # Exposures first, oldest first.
        exposures: list[tuple[str, Exposure]] = []
        poison: dict[str, list[str]] = {self._xs: [], self._es: []}
        for entry_id, fields in entries[self._xs]:
            try:
                exposures.append((entry_id, EXPOSURE_DECODER.decode(_field(fields))))
            except (msgspec.DecodeError, KeyError) as exc:
                log.error("undecodable exposure %s: %s", entry_id, exc)
                poison[self._xs].append(entry_id)
        now = time.monotonic()
        for entry_id, fields in entries[self._es]:
            if entry_id in self._held:
                continue
            try:
                event = EVENT_DECODER.decode(_field(fields))
            except (msgspec.DecodeError, KeyError) as exc:
                log.error("undecodable event %s: %s", entry_id, exc)
                poison[self._es].append(entry_id)
                continue
            t = _id_ms(entry_id) / 1000.0
            self._max_event_s = max(self._max_event_s, t)
            self._held[entry_id] = _Held(entry_id, event, t, now)
        if poison[self._xs] or poison[self._es]:  # before XPENDING below, so they do not hold events
            pipe = self._redis.pipeline(transaction=False)
            for stream, ids in poison.items():
                if ids:
                    pipe.xack(stream, self.group, *ids)
            await pipe.execute()
            self.skipped += len(poison[self._xs]) + len(poison[self._es])
            done += len(poison[self._xs]) + len(poison[self._es])
        exposures.sort(key=lambda item: (item[1].ts, item[0]))
        records = [self._exposure_record(eid, x) for eid, x in exposures]
        pending_min = await self._run_records(records, with_pending=True)
        done += len(records)
        # Which held events can no longer be preceded by an exposure we have not processed?
        if exposures_caught_up:
            frontier = max(read_at, self._max_event_s)
        else:
            frontier = self._exposure_frontier
        if pending_min is not None:
            frontier = min(frontier, (pending_min - 1) / 1000.0)
        grace = self.exposure_grace_s
        release = [
            h for h in self._held.values() if h.t + grace <= frontier or now - h.since > self.max_hold_s
        ]
        for h in release:
            if not (h.t + grace <= frontier):
                log.warning("event %s held %.0f s waiting for exposures; released", h.entry_id, now - h.since)
            del self._held[h.entry_id]
        release.sort(key=lambda h: (h.event.ts or h.t, h.entry_id))
        records = [self._event_record(h.entry_id, h.event) for h in release]
        await self._run_records(records, with_pending=False)
        done += len(records)
        return done

    async def _run_records(self, records: list[list[str]], *, with_pending: bool) -> int | None:
        """Run the script over ``records`` in chunks of :data:`CHUNK`, all in one pipelined round trip
        (followed by ``XPENDING`` of the exposure stream when asked).

        A chunk that fails part-way is re-run one record per call, so one bad record cannot hold back
        the others; records it had already counted come back as duplicates. Returns the smallest
        exposure id (ms) still pending in the group, or ``None``."""
        if not records and not with_pending:
            return None
        chunks = [records[i : i + CHUNK] for i in range(0, len(records), CHUNK)]
        results = await self._execute(chunks, with_pending)
        if any(isinstance(r, NoScriptError) for r in results[: len(chunks)]):
            await self._load_scripts()  # SCRIPT FLUSH or a restarted server; the records are idempotent
            results = await self._execute(chunks, with_pending)
        statuses: list[object] = []
        retry = [chunk for chunk, result in zip(chunks, results) if isinstance(result, Exception)]
        for chunk, result in zip(chunks, results):
            if not isinstance(result, Exception):
                statuses.extend(result)
        if retry:
            log.error("aggregation script failed on a chunk (%s); retrying its records one by one",
                      next(r for r in results if isinstance(r, Exception)))
            singles = [[record] for chunk in retry for record in chunk]
            for record, result in zip(singles, await self._execute(singles, False)):
                if isinstance(result, Exception):
                    self.failed += 1
                    log.error("aggregating %s failed, left pending: %s", record[0][1], result)
                else:
                    statuses.extend(result)
        for status in statuses:
            if int(status) == 0:  # type: ignore[call-overload]
                self.duplicates += 1
            else:
                self.processed += 1
        if not with_pending:
            return None
        summary = results[-1]
        if isinstance(summary, Exception) or not summary or not summary.get("pending"):
            return None
        return _id_ms(_text(summary["min"]))

    async def _execute(self, chunks: list[list[list[str]]], with_pending: bool) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for chunk in chunks:
            pipe.evalsha(
                self._sha, 0, _RECORDS_ENCODER.encode(chunk), self.group, self._dedupe_ttl, self._state_ttl,
                self._xs, self._es,
            )
        if with_pending:
            pipe.xpending(self._xs, self.group)
        return await pipe.execute(raise_on_error=False)

    def _dedupe_key(self, stream: str, entry_id: str) -> str:
        return f"vary:agg:seen:{stream}:{_id_ms(entry_id) // 60_000}"

    def _exposure_record(self, entry_id: str, x: Exposure) -> list[str]:
        experience = x.experience or ""
        deadline = x.ts + self.window_for(experience) if experience else x.ts
        return [
            "x", entry_id, self._dedupe_key(self._xs, entry_id), x.visitor_id or "", experience,
            HOLDOUT_VARIANT if x.holdout else str(x.variant), _num(x.ts), _num(deadline), x.channel,
            top_segment(x.segments), utc_day(x.ts), x.entry_id, str(week_index(x.ts)),
        ]

    def _event_record(self, entry_id: str, e: Event) -> list[str]:
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
        return [
            "e", entry_id, self._dedupe_key(self._es, entry_id), e.visitor_id, kind, _num(ts), utc_day(ts),
            e.touchpoint or NO_TOUCHPOINT, goal, value, *extra, e.channel or "", str(week_index(ts)),
        ]

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
