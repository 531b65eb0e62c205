-- The aggregation state of a linked id merged into its person's (personalization/store/identity.py);
-- identity_merge.lua, which the store prepends this to, calls it in the person's slot.
--
-- vary_merge_state(snap, xs, xfs, ts, cxs, max_totals, max_conversions):
--   snap.x / xf / t   the id's …:x, …:xf, …:t hashes; snap.cx {seg, seg_ts, xch, ch, ts} of …:cx
--                     (cjson.null when absent); snap.left the milliseconds left of x, xf, t, cx
--   xs, xfs, ts, cxs  the person's …:x, …:xf, …:t, …:cx keys (personalization/store/keys.py)
-- Rules (personalization/measurement/scripts/outcome.lua writes these hashes), each commutative:
--   x   per experience the state with the earliest first exposure wins, and that experience's
--       flags in xf ('<x>|…') follow it, so a conversion after the link is attributed to the
--       exposure that came first, on whichever id; orders seen ('o:<order>') are a union
--   t   lifetime totals add (at most max_totals fields; n:<goal> at most max_conversions)
--   cx  segment, its time and channel of the earliest exposure; channel and time of the latest event
--   a key keeps the longer of the two remaining lifetimes
local function first_ts(state)
  return tonumber(string.match(state or '', '^[^|]*|([^|]*)') or '') or 1e18
end

local function keep_longer(key, left)
  left = tonumber(left) or -2
  if left > 0 and redis.call('EXISTS', key) == 1 and redis.call('PTTL', key) < left then
    redis.call('PEXPIRE', key, left)
  end
end

local function vary_merge_state(snap, xs, xfs, ts, cxs, max_totals, max_conversions)
  local held_flags = nil
  for exp, state in pairs(snap.x) do
    if first_ts(state) < first_ts(redis.call('HGET', xs, exp)) then
      redis.call('HSET', xs, exp, state)
      local prefix = exp .. '|'
      held_flags = held_flags or redis.call('HKEYS', xfs)
      local drop = {}
      for _, f in ipairs(held_flags) do
        if string.sub(f, 1, #prefix) == prefix then drop[#drop + 1] = f end
      end
      if #drop > 0 then redis.call('HDEL', xfs, unpack(drop)) end
      for f, v in pairs(snap.xf) do
        if string.sub(f, 1, #prefix) == prefix then redis.call('HSET', xfs, f, v) end
      end
      held_flags = nil
    end
  end
  for f, v in pairs(snap.xf) do
    if string.sub(f, 1, 2) == 'o:' then redis.call('HSET', xfs, f, v) end
  end
  local count = redis.call('HLEN', ts)
  for f, v in pairs(snap.t) do
    local held = redis.call('HEXISTS', ts, f) == 1
    if held or count < max_totals then
      if not held then count = count + 1 end
      if string.sub(f, 1, 2) == 'n:' then
        local n = redis.call('HINCRBY', ts, f, tonumber(v) or 0)
        if n > max_conversions then redis.call('HSET', ts, f, max_conversions) end
      else
        redis.call('HINCRBYFLOAT', ts, f, tonumber(v) or 0)
      end
    end
  end
  local cx = snap.cx
  if cx[2] ~= cjson.null then
    local mine = tonumber(redis.call('HGET', cxs, 'seg_ts') or '')
    if not mine or tonumber(cx[2]) < mine then
      redis.call('HSET', cxs, 'seg', cx[1], 'seg_ts', cx[2], 'xch', cx[3])
    end
  end
  if cx[5] ~= cjson.null then
    local mine = tonumber(redis.call('HGET', cxs, 'ts') or '')
    if not mine or tonumber(cx[5]) > mine then redis.call('HSET', cxs, 'ch', cx[4], 'ts', cx[5]) end
  end
  local keys = {xs, xfs, ts, cxs}
  for k = 1, 4 do keep_longer(keys[k], snap.left[k]) end
end
