-- A loop turn's profile reads in one call (personalization/store/profile_scripts.py, issue 22): one
-- reply for the client to parse instead of three per visitor.
--
-- KEYS: any hashes (the profile store sends each visitor's profile, history and traits, in order)
-- ARGV: none
-- Returns, per key, its HGETALL reply (a flat name, value array; empty for a missing key).
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGETALL', KEYS[i]) end
return out
