-- Step 1 of aggregation, the visitor's outcome: one call per chunk of records.
--
-- Reads and writes the visitor's own keys only (<visitor key prefix>...) and *emits* every change
-- to a shared aggregate as an op {key, kind, field, amount} (kind 'i' HINCRBY, 'z' HINCRBY and
-- HDEL at 0, 'f' HINCRBYFLOAT, 's' SADD field), grouped by the key's hash tag:
-- {tag, marked (1 when a group holds a counter), ops}. The rules it implements are written out in
-- personalization/measurement/attribution.py.
--
-- KEYS: none on a single node; on a cluster, declared for routing only: each visitor's outcome
--   key and its ...:x, ...:xf, ...:t, ...:cx keys (all in one slot).
-- ARGV[1]: a JSON array of records, every field a string:
--   exposure: 'x', outcome field, outcome key ('' = anonymous), visitor key prefix ('' = anonymous;
--     vary:vh:{<visitor tag>}:, built by personalization/store/keys.py), experience ('' = content;
--     from phase 2 on the phase's name <key>@p<n>, its own aggregates and visitor state),
--     variant label, ts, deadline, channel, segment, day, entry id, week (CX)
--   event: 'e', outcome field, outcome key, visitor key prefix, kind, ts, day, touchpoint, goal ('' none),
--     value ('' none), then kind-specific: purchase order id, currency | task success, duration,
--     ln duration, bucket | feedback problem | survey metric, score; then channel ('' none),
--     week (CX)
-- ARGV[2]: dedupe ttl (s), ARGV[3]: state ttl (s).
-- ARGV[4]: the goals each experience counts, JSON {"x": {experience: [goal, ...]}, "d": [goal, ...]}
--   (personalization/measurement/goals.py, by experience key: a phase <key>@p<n> counts its
--   experience's goals; '' = every goal counts). ARGV[5]: most conversions and
--   purchases counted per visitor, experience and minute of arrival, and with it one answer per
--   survey metric, visitor, experience and day (0 = neither limit). What is not counted is
--   counted instead in the experience's 'all' hash as discarded:<reason> (goal, rate,
--   survey_repeat).
-- Keys it builds from the records (the same names as personalization/store/keys.py): the
--   visitor's <prefix>x, xf, t, cx, cxb:<dim> (read and written here; the prefix comes in the
--   record, never derived here), and, in the
--   ops it returns, vary:agg:{<x>}:<dim>|ux:<tp>|problems:<v>:<tp>|dims|goals|tps,
--   vary:agg:experiences, vary:agg:content:all|day:<day>, vary:cx:{w:<week>}:<dim>,
--   vary:cx:{idx}:weeks|dims.
-- Returns {status, outcome} per record: status 1 counted now, 2 duplicate order, 3 an outcome
-- stored by an earlier run (resumed), 0 already applied, 4 an earlier run raised part-way
-- (nothing to apply); outcome is the msgpack of the groups ('' when there is nothing to apply).
--
-- The line that reads exactly "--#include journey.lua" (below) is replaced by journey.lua on load.
local dedupe_ttl, ttl = ARGV[2], ARGV[3]
local groups, order
local policy, max_rate = nil, tonumber(ARGV[5] or '') or 0
if ARGV[4] and ARGV[4] ~= '' then policy = cjson.decode(ARGV[4]) end
local goal_sets, union = {}, nil
-- Most conversions of one goal counted into a visitor's pre-exposure covariate (a flood from one
-- visitor must not dominate the shared CUPED sums); attribution.py reads this line.
local max_x_conversions = 100

-- The experience an aggregate name belongs to: a phase's name <key>@p<n> without its suffix.
local function experience_of(exp)
  return string.match(exp, '^(.-)@p%d+$') or exp
end

local function counts_goal(exp, goal)
  if not policy then return true end
  local s = goal_sets[exp]
  if not s then
    s = {}
    for _, g in ipairs(policy['x'][experience_of(exp)] or policy['d']) do s[g] = true end
    goal_sets[exp] = s
  end
  return s[goal] == true
end

local function any_counts(goal)  -- a goal some experience counts: kept in the visitor's totals
  if not policy then return true end
  if not union then
    union = {}
    for _, g in ipairs(policy['d']) do union[g] = true end
    for _, list in pairs(policy['x']) do
      for _, g in ipairs(list) do union[g] = true end
    end
  end
  return union[goal] == true
end

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
--#include journey.lua
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
  local tag = visitor
  local state, flags = tag .. 'x', tag .. 'xf'
  local cur = redis.call('HGET', state, exp)
  if not cur then
    redis.call('HSET', state, exp, v .. '|' .. ts .. '|' .. deadline .. '|' .. ch .. '|' .. seg)
    for _, k in ipairs(dims) do emit(k, 'i', v .. ':visitors', 1) end
    local totals = redis.call('HGETALL', tag .. 't')
    for i = 1, #totals, 2 do
      local x = tonumber(totals[i + 1])
      local counted = string.match(totals[i], '^n:(.*)$')
      if counted then  -- CUPED on conversions: the visitor's conversions of the goal so far
        if x ~= 0 and counts_goal(exp, counted) then
          redis.call('HSET', flags, exp .. '|xn:' .. counted, totals[i + 1])
          emit(all, 'i', v .. ':xcsum:' .. counted, x)
          emit(all, 'i', v .. ':xcsumsq:' .. counted, x * x)
        end
      elseif x ~= 0 and counts_goal(exp, totals[i]) then
        redis.call('HSET', flags, exp .. '|x:' .. totals[i], totals[i + 1])
        emit(all, 'f', v .. ':xsum:' .. totals[i], x)
        emit(all, 'f', v .. ':xsumsq:' .. totals[i], x * x)
      end
    end
    if #totals > 0 then redis.call('EXPIRE', flags, ttl) end
  else
    local sv, first, rest = string.match(cur, '^([^|]*)|([^|]*)|[^|]*|(.*)$')
    if sv ~= v then emit(all, 'i', 'variant_conflicts', 1) end
    -- Retention: exposures on two UTC days (the earliest so far is `first`; this one's day differs).
    if math.floor(tonumber(ts) / 86400) ~= math.floor(tonumber(first) / 86400)
        and redis.call('HSETNX', flags, exp .. '|ret', 1) == 1 then
      emit(all, 'i', sv .. ':returning', 1)
      redis.call('EXPIRE', flags, ttl)
    end
    if tonumber(ts) < tonumber(first) then
      redis.call('HSET', state, exp, sv .. '|' .. ts .. '|' .. deadline .. '|' .. rest)
    end
  end
  redis.call('EXPIRE', state, ttl)
  return 1
end

-- Whether an attributed event is discarded for `exp` (counted under discarded:<reason> instead):
-- a conversion of a goal the experience does not count, a conversion or purchase beyond
-- max_rate in its minute of arrival (the stream entry id's time, not the client's ts), or a
-- second answer to one survey metric on one day.
local function discarded(exp, kind, goal, r, flags)
  local why
  if kind == 'conversion' and not counts_goal(exp, goal) then
    why = 'goal'
  elseif max_rate > 0 and (kind == 'conversion' or kind == 'purchase') then
    local minute = math.floor(tonumber(string.match(r[2], '(%d+)%-%d+$')) / 60000)
    local m, n = string.match(redis.call('HGET', flags, exp .. '|r') or '', '^(%d+)|(%d+)$')
    n = (tonumber(m) == minute) and tonumber(n) + 1 or 1
    redis.call('HSET', flags, exp .. '|r', string.format('%d|%d', minute, n))
    if n > max_rate then why = 'rate' end
  elseif max_rate > 0 and kind == 'survey' then
    local k = exp .. '|s:' .. r[11]
    if redis.call('HGET', flags, k) == r[7] then why = 'survey_repeat' else redis.call('HSET', flags, k, r[7]) end
  end
  if not why then return false end
  emit('vary:agg:{' .. exp .. '}:all', 'i', 'discarded:' .. why, 1)
  return true
end

local function event(r)
  local tag = r[4]
  local flags = tag .. 'xf'
  local kind, ts, day, tp, goal = r[5], tonumber(r[6]), r[7], r[8], r[9]
  local value = tonumber(r[10])
  if kind == 'purchase' then
    if redis.call('HSETNX', flags, 'o:' .. r[11], 1) == 0 then return 2 end
    redis.call('EXPIRE', flags, ttl)
  end
  cx_event(r)
  if goal ~= '' and any_counts(goal) then  -- lifetime value and conversions: the CUPED covariates
    if value then redis.call('HINCRBYFLOAT', tag .. 't', goal, value) end
    if tonumber(redis.call('HGET', tag .. 't', 'n:' .. goal) or '0') < max_x_conversions then
      redis.call('HINCRBY', tag .. 't', 'n:' .. goal, 1)
    end
    redis.call('EXPIRE', tag .. 't', ttl)
  end
  local exps = redis.call('HGETALL', tag .. 'x')
  local attributed = 0
  for i = 1, #exps, 2 do
    local exp = exps[i]
    local v, first, deadline, ch, seg = string.match(exps[i + 1], '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    first = tonumber(first)
    if goal ~= '' and ts < first and counts_goal(exp, goal) then
      -- A pre-exposure conversion processed after the exposure: add it to the CUPED covariates now.
      attributed = attributed + 1
      local all = 'vary:agg:{' .. exp .. '}:all'
      if value then
        local xk = exp .. '|x:' .. goal
        local xold = tonumber(redis.call('HGET', flags, xk) or '0')
        redis.call('HINCRBYFLOAT', flags, xk, value)
        emit(all, 'f', v .. ':xsum:' .. goal, value)
        emit(all, 'f', v .. ':xsumsq:' .. goal, 2 * xold * value + value * value)
        local y = tonumber(redis.call('HGET', flags, exp .. '|v:' .. goal) or '0')
        if y ~= 0 then emit(all, 'f', v .. ':xysum:' .. goal, y * value) end
      end
      local nk = exp .. '|xn:' .. goal
      local nold = tonumber(redis.call('HGET', flags, nk) or '0')
      if nold < max_x_conversions then
        redis.call('HINCRBY', flags, nk, 1)
        emit(all, 'i', v .. ':xcsum:' .. goal, 1)
        emit(all, 'i', v .. ':xcsumsq:' .. goal, 2 * nold + 1)
        if redis.call('HEXISTS', flags, exp .. '|c:' .. goal) == 1 then emit(all, 'i', v .. ':xcysum:' .. goal, 1) end
      end
    elseif ts >= first and ts <= tonumber(deadline) and discarded(exp, kind, goal, r, flags) then
      attributed = attributed + 1  -- not counted; discarded() counted why
    elseif ts >= first and ts <= tonumber(deadline) then
      attributed = attributed + 1
      local p = 'vary:agg:{' .. exp .. '}:'
      local all = p .. 'all'
      if goal ~= '' and counts_goal(exp, goal) then
        local dims = {all, p .. 'ch:' .. ch, p .. 'seg:' .. seg, p .. 'day:' .. day}
        emit(p .. 'goals', 's', goal)
        emit(p .. 'dims', 's', 'day:' .. day)
        for _, k in ipairs(dims) do emit(k, 'i', v .. ':events:' .. goal, 1) end
        if redis.call('HSETNX', flags, exp .. '|c:' .. goal, 1) == 1 then
          for _, k in ipairs(dims) do emit(k, 'i', v .. ':conv:' .. goal, 1) end
          local xn = redis.call('HGET', flags, exp .. '|xn:' .. goal)
          if xn then emit(all, 'i', v .. ':xcysum:' .. goal, tonumber(xn)) end
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
        -- Per currency (never summed across): the visitor's running revenue R and orders O in it
        -- make the sums of R², O² and R·O over visitors exact under incremental updates.
        local rk, ok, c = exp .. '|cr:' .. r[12], exp .. '|co:' .. r[12], v .. ':cur:' .. r[12] .. ':'
        local rold = tonumber(redis.call('HGET', flags, rk) or '0')
        local oold = redis.call('HINCRBY', flags, ok, 1) - 1
        redis.call('HINCRBYFLOAT', flags, rk, value)
        emit(all, 'i', c .. 'orders', 1)
        emit(all, 'f', c .. 'revenue', value)
        if oold == 0 then emit(all, 'i', c .. 'buyers', 1) end
        emit(all, 'f', c .. 'rsq', 2 * rold * value + value * value)
        emit(all, 'i', c .. 'osq', 2 * oold + 1)
        emit(all, 'f', c .. 'ro', rold + value * oold + value)
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
