-- A person's survey state (personalization/store/surveys.py): a function the event script
-- (personalization/measurement/scripts/event_profile.lua) calls for an event that changes it; the
-- recorder prepends this file to that script, so the state is written in the same atomic call, in the
-- person's slot, as the event's marker: an event replayed from the spool, or retried with its
-- event_id, is noted exactly once.
--
-- vary_survey_note(key, kind, name, ts, ttl):
--   key   the state hash (vary:vh:{<visitor tag>}:sv, personalization/store/keys.py survey_state_key)
--   kind  's' a survey shown (name: the survey key), 't' a trigger fired (name: its label, e.g.
--         task_success:checkout)
--   ts    epoch seconds, as text (stored as given)
--   ttl   seconds the hash lives after this write (the profile's TTL)
-- Fields (prefixes from personalization/decision/surveys.py): 'last' the latest showing of any
-- survey; 's:<survey>' its latest showing and 'n:<survey>' how often it was shown — a showing at the
-- time already stored is a retry (a client resending without its event_id) and is not counted
-- again; 't:<trigger>' the latest firing.
local function vary_survey_note(key, kind, name, ts, ttl)
  local at = tonumber(ts)
  if kind == 's' then
    local prev = tonumber(redis.call('HGET', key, 's:' .. name) or '-1')
    if at ~= prev then
      if at > prev then redis.call('HSET', key, 's:' .. name, ts) end
      redis.call('HINCRBY', key, 'n:' .. name, 1)
      local last = tonumber(redis.call('HGET', key, 'last') or '-1')
      if at > last then redis.call('HSET', key, 'last', ts) end
    end
  else
    local prev = tonumber(redis.call('HGET', key, 't:' .. name) or '-1')
    if at > prev then redis.call('HSET', key, 't:' .. name, ts) end
  end
  redis.call('EXPIRE', key, ttl)
end
