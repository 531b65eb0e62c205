-- Linking an id to a person, half 1 (the linked id's slot): point the id at its person and take a
-- snapshot of what it holds, atomically (personalization/store/identity.py).
--
-- KEYS[1]: the id's profile hash (vary:vh:{<visitor tag>}:p), KEYS[2]: its traits hash (…:tr),
--   KEYS[3..6]: its aggregation state …:x, …:xf, …:t, …:cx (personalization/store/keys.py)
-- ARGV[1]: the person id, ARGV[2]: the profile's ttl (s)
-- The pointer is the profile hash's field 'person', so a decision reads it with the profile (no
-- extra command). Returns {status, profile, traits, x, xf, t (each flat field, value pairs),
-- cx {seg, seg_ts, xch, ch, ts} (false when absent), the milliseconds left of x, xf, t, cx};
-- status 'new' (first link), 'same' (linked to this person before: the merge is skipped by the
-- person's marker) or 'moved' (linked to another person before: from now on it is this one's; what
-- it held stays the other person's, so the snapshot is empty).
local current = redis.call('HGET', KEYS[1], 'person')
local status = 'new'
if current == ARGV[1] then status = 'same' elseif current then status = 'moved' end
redis.call('HSET', KEYS[1], 'person', ARGV[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
if status == 'moved' then return {status, {}, {}, {}, {}, {}, {}, {}} end
local left = {}
for k = 3, 6 do left[#left + 1] = redis.call('PTTL', KEYS[k]) end
return {status, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]),
  redis.call('HGETALL', KEYS[4]), redis.call('HGETALL', KEYS[5]),
  redis.call('HMGET', KEYS[6], 'seg', 'seg_ts', 'xch', 'ch', 'ts'), left}
