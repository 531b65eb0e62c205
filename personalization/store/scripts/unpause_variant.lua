-- Take back one pause this caller made (personalization/store/pauses.py: a person resumed the
-- variant while the guardrail monitor was pausing it). Only the caller's own record goes: the pause
-- is removed when its record still has ARGV[3]'s time, metric and phase, so a later pause is never undone.
-- KEYS[1] the pauses hash, ARGV[1] experience key, ARGV[2] variant, ARGV[3] the pause record (JSON)
-- Returns 1 when the pause was taken back, 0 when it was gone or not this caller's.
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local paused = cjson.decode(raw)
local mine = paused[ARGV[2]]
local ours = cjson.decode(ARGV[3])
if mine == nil or mine.at ~= ours.at or mine.metric ~= ours.metric or mine.phase ~= ours.phase then
  return 0
end
paused[ARGV[2]] = nil
if next(paused) == nil then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(paused))
end
return 1
