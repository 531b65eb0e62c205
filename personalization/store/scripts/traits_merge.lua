-- The visitor's stored traits (personalization/store/traits.py): a function the event script
-- (personalization/measurement/scripts/event_profile.lua) calls for an identify event, and the
-- profile store's own script (traits_remember.lua) calls for traits sent on personalize. Either
-- caller prepends this file, so the merge runs atomically in the visitor's slot.
--
-- vary_traits(key, ttl, max_traits, max_bytes, argv, first):
--   key         the traits hash (vary:vh:{<visitor tag>}:tr)
--   ttl         seconds the hash lives after its last write (the profile's)
--   max_traits  most traits kept; max_bytes most bytes (Σ #name + #JSON value) kept
--   argv, first the pairs name, JSON value start at argv[first]; the JSON 'null' clears the trait
-- Latest wins. A merge that would pass either bound is not applied at all (the API refuses it
-- before it gets here, naming the trait; this is the bound a race or a replay cannot pass).
-- Returns 1 when merged, 0 when refused.
local function vary_traits(key, ttl, max_traits, max_bytes, argv, first)
  if first > #argv then return 1 end
  local flat = redis.call('HGETALL', key)
  local kept = {}
  for i = 1, #flat, 2 do kept[flat[i]] = flat[i + 1] end
  for i = first, #argv, 2 do
    if argv[i + 1] == 'null' then kept[argv[i]] = nil else kept[argv[i]] = argv[i + 1] end
  end
  local count, bytes = 0, 0
  for name, value in pairs(kept) do
    count = count + 1
    bytes = bytes + #name + #value
  end
  if count > max_traits or bytes > max_bytes then return 0 end
  local set, cleared = {}, {}
  for i = first, #argv, 2 do
    if argv[i + 1] == 'null' then
      cleared[#cleared + 1] = argv[i]
    else
      set[#set + 1] = argv[i]
      set[#set + 1] = argv[i + 1]
    end
  end
  if #cleared > 0 then redis.call('HDEL', key, unpack(cleared)) end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if count > 0 then redis.call('EXPIRE', key, ttl) end
  return 1
end
