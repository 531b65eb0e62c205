-- Journey (CX) aggregates: Lua functions shared by the exposure and event paths of outcome.lua.
--
-- Not a script on its own: outcome.lua pulls this file in at its "--#include journey.lua" line
-- (personalization/measurement/attribution.py does the substitution when it loads the scripts),
-- and these functions use outcome.lua's `emit` and `ttl`. No KEYS or ARGV of its own.
--
-- A visitor's weeks are {week, n, label}: n = 0 (active, no channel), 1 (one channel or one
-- purchase: label), 2 (two or more). For a "which visitors did X in [a, b]" count to be exact over
-- any range of whole weeks, each visitor contributes one term per distinct week
-- ('<name>:<the previous such week>') and one per *minimal* week interval [x, y] that holds two
-- channels / two purchases ('<name>:<y>:<previous interval's x>'), both stored under week x; see
-- the docstring of personalization/measurement/attribution.py.
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
  local st = r[4] .. 'cx'
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
  local tag = r[4]
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
