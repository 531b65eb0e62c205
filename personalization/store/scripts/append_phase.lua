-- Append phase n+1 of one experience, only if phase n is still its current one
-- (personalization/store/phases.py decides whether a new phase is due; this makes the append a
-- compare-and-set, so two workers that apply the same new snapshot append it once).
-- KEYS[1] the experience's phases hash (field "<n>" -> JSON record, field "current" -> n)
-- ARGV[1] the current phase the caller read (0: none yet), ARGV[2] the new phase's record (JSON)
-- Returns {current phase after the call, 1 if this call appended it else 0}.
local current = tonumber(redis.call('HGET', KEYS[1], 'current') or '0')
if current ~= tonumber(ARGV[1]) then
  return {current, 0}
end
local n = current + 1
redis.call('HSET', KEYS[1], tostring(n), ARGV[2], 'current', tostring(n))
return {n, 1}
