-- Step 2 of aggregation: apply the shared aggregates of one hash tag.
--
-- A marked group is applied only if its marker was new (set first, so a group that raises
-- part-way is not re-applied over its own writes); SADD-only groups are idempotent and need none.
--
-- KEYS: every key touched (the markers and every op's key; all of one slot).
-- ARGV[1]: msgpack list of {marker key ('' none), marker field, ops} in entry order; each op is
--   {key, kind, field, amount}: 'i' HINCRBY, 'z' HINCRBY then HDEL at 0, 'f' HINCRBYFLOAT,
--   's' SADD field.
-- ARGV[2]: dedupe ttl (s) of the markers.
-- Returns 1 (applied) or 0 (already applied) per group.
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
