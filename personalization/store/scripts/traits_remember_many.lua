-- A loop turn's trait merges in one call (personalization/store/profile_scripts.py, issue 22);
-- vary_traits is defined by traits_merge.lua, which the profile store prepends to this script.
--
-- KEYS: the traits hash of each visitor (vary:vh:{<visitor tag>}:tr)
-- ARGV[1] ttl (s), [2] most traits, [3] most bytes, [3 + i] how many arguments key i has, then the
-- name, JSON value pairs of key 1, of key 2, ... (as traits_remember.lua takes them from ARGV[4]).
-- Returns, per key, what traits_remember.lua returns (1 merged, 0 refused by a bound) or the error
-- that key's merge raised: pcall keeps one visitor's failure (a WRONGTYPE key, say) from stopping
-- the others' merges, as when each was its own call.
local ttl, most, bytes = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local results, at = {}, 4 + #KEYS
for i = 1, #KEYS do
  local n = tonumber(ARGV[3 + i])
  local argv = {}
  for j = 1, n do argv[j] = ARGV[at + j - 1] end
  at = at + n
  local ok, result = pcall(vary_traits, KEYS[i], ttl, most, bytes, argv, 1)
  if ok then
    results[i] = result
  elseif type(result) == 'table' and result.err then
    results[i] = result
  else
    results[i] = redis.error_reply(tostring(result))
  end
end
return results
