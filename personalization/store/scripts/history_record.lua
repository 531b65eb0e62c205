-- The bounded per-visitor history (personalization/store/visitor_history.py): a function the event
-- script (personalization/measurement/scripts/event_profile.lua) calls once per counted event; the
-- recorder prepends this file to that script, so both run as one atomic script in the visitor's slot.
--
-- vary_history(key, field, ts, keep, cap, ttl):
--   key   the history hash (vary:vh:{<visitor tag>}:h)
--   field 'p:<page url>' or 'e:<event name>'; its value is '<count> <ts> <ts> ...' (oldest first)
--   keep  most timestamps kept per field (older ones dropped; the count goes on)
--   cap   most fields of the same kind ('p:' or 'e:'); a new one evicts the least recently seen
--   ttl   seconds the hash lives after its last write (the profile's)
local function vary_history(key, field, ts, keep, cap, ttl)
  local stamp = math.floor(ts)
  local raw = redis.call('HGET', key, field)
  local count, stamps = 0, {}
  if raw then
    local first = true
    for token in string.gmatch(raw, '%S+') do
      if first then count = tonumber(token) or 0; first = false else stamps[#stamps + 1] = tonumber(token) end
    end
  else
    local kind = string.sub(field, 1, 2)
    local all = redis.call('HGETALL', key)
    local n, oldest, oldest_ts = 0, nil, nil
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == kind then
        n = n + 1
        local last = tonumber(string.match(all[i + 1], '(%d+)%s*$')) or 0
        if oldest_ts == nil or last < oldest_ts then oldest, oldest_ts = all[i], last end
      end
    end
    if n >= cap and oldest then redis.call('HDEL', key, oldest) end
  end
  -- events may arrive out of order (a replayed spool, a client's late batch): keep stamps sorted
  local at = #stamps + 1
  while at > 1 and stamps[at - 1] > stamp do at = at - 1 end
  table.insert(stamps, at, stamp)
  while #stamps > keep do table.remove(stamps, 1) end
  local parts = {tostring(count + 1)}
  for i = 1, #stamps do parts[#parts + 1] = string.format('%d', stamps[i]) end
  redis.call('HSET', key, field, table.concat(parts, ' '))
  redis.call('EXPIRE', key, ttl)
end

