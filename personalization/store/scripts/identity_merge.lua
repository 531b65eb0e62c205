-- Linking an id to a person, half 2 (the person's slot): merge the id's snapshot into the person,
-- once (personalization/store/identity.py has the rules and why they make merges commute).
--
-- KEYS[1]: the person's profile hash, KEYS[2]: its traits hash, KEYS[3]: its linked ids hash,
--   KEYS[4..7]: its aggregation state …:x, …:xf, …:t, …:cx (merged by vary_merge_state,
--   identity_state.lua, which the store prepends to this script)
-- ARGV[1]: the id, ARGV[2]: the user id, ARGV[3]: ttl (s), ARGV[4]: most traits,
-- ARGV[5]: the snapshot, JSON {"p": {field: value}, "tr": {trait: JSON value}, "x", "xf", "t":
--   {field: value}, "cx": [seg, seg_ts, xch, ch, ts] (null when absent), "left": [ms × 4]},
-- ARGV[6]: most lifetime totals, ARGV[7]: most conversions in a total
-- Returns 1 when merged now, 0 when this id was merged before (idempotent).
if redis.call('HGET', KEYS[3], ARGV[1]) == '1' then return 0 end
local snap = cjson.decode(ARGV[5])
local key, traits, id = KEYS[1], KEYS[2], ARGV[1]
local first = tonumber(snap.p.first_seen or '') or 1e18
local last = tonumber(snap.p.last_seen or '') or -1
local own_last = tonumber(redis.call('HGET', key, 'last_seen') or '') or -1

-- ranks are (number, id): the lower first seen keeps an assignment, the higher last seen a trait
local function rank_of(stored)
  local n, who = string.match(stored, '^(%S+) (.*)$')
  return tonumber(n) or 0, who or ''
end
local function below(n1, id1, n2, id2)
  if n1 ~= n2 then return n1 < n2 end
  return id1 < id2
end
local function fmt(n) return string.format('%.17g', n) end

local function merge_counter(field, theirs)
  local mine = redis.call('HGET', key, field)
  if not mine then redis.call('HSET', key, field, theirs) return end
  local a = {} for part in string.gmatch(mine, '%S+') do a[#a + 1] = tonumber(part) or 0 end
  local b = {} for part in string.gmatch(theirs, '%S+') do b[#b + 1] = tonumber(part) or 0 end
  if #a ~= 5 or #b ~= 5 then return end
  local out = {}
  for i = 1, 3, 2 do  -- (day, n), (week, n): the later bucket, summed when both are in it
    if a[i] == b[i] then out[i], out[i + 1] = a[i], a[i + 1] + b[i + 1]
    elseif a[i] > b[i] then out[i], out[i + 1] = a[i], a[i + 1]
    else out[i], out[i + 1] = b[i], b[i + 1] end
  end
  out[5] = a[5] + b[5]
  redis.call('HSET', key, field, table.concat(out, ' '))
end

for name, value in pairs(snap.p) do
  local head2, head3 = string.sub(name, 1, 2), string.sub(name, 1, 3)
  if name == 'visits' or name == 'page_views' or name == 'conversions' or head2 == 'g:' then
    redis.call('HINCRBY', key, name, tonumber(value) or 0)
  elseif head3 == 'ch:' then
    redis.call('HSET', key, name, 1)
  elseif head2 == 'f:' then
    merge_counter(name, value)
  elseif head2 == 'a:' then
    local x = string.sub(name, 3)
    local held = redis.call('HGET', key, name)
    local rank = redis.call('HGET', key, 'as:' .. x)
    local take = not held
    if held and rank then
      local n, who = rank_of(rank)
      take = below(first, id, n, who)
    end  -- held without a rank: served to the person after a link, kept
    if take then redis.call('HSET', key, name, value, 'as:' .. x, fmt(first) .. ' ' .. id) end
  end
end
local seen = tonumber(redis.call('HGET', key, 'first_seen') or '')
if snap.p.first_seen and (not seen or first < seen) then redis.call('HSET', key, 'first_seen', snap.p.first_seen) end
if snap.p.last_seen and last > own_last then redis.call('HSET', key, 'last_seen', snap.p.last_seen) end

local count = redis.call('HLEN', traits)
for name, value in pairs(snap.tr) do
  local held = redis.call('HEXISTS', traits, name) == 1
  local rank = redis.call('HGET', key, 'tt:' .. name)
  local take = not held
  if held then
    local n, who = own_last, ''
    if rank then n, who = rank_of(rank) end
    take = below(n, who, last, id)
  elseif count >= tonumber(ARGV[4]) then
    take = false  -- the person's bound: a new trait past it is not kept
  end
  if take then
    if not held then count = count + 1 end
    redis.call('HSET', traits, name, value)
    redis.call('HSET', key, 'tt:' .. name, fmt(last) .. ' ' .. id)
  end
end

vary_merge_state(snap, KEYS[4], KEYS[5], KEYS[6], KEYS[7], tonumber(ARGV[6]), tonumber(ARGV[7]))
redis.call('HSET', key, 'user', ARGV[2])
redis.call('HSET', KEYS[3], id, '1')
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', key, ttl)
redis.call('EXPIRE', KEYS[3], ttl)
if count > 0 then redis.call('EXPIRE', traits, ttl) end
return 1
