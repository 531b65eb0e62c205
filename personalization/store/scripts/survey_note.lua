-- A person's survey state (personalization/store/surveys.py): the showings and watched triggers of
-- one events batch, in one atomic call in the person's slot.
--
-- KEYS[1]: the state hash (vary:vh:{<visitor tag>}:sv, personalization/store/keys.py survey_state_key)
-- ARGV[1]: seconds the hash lives after this write (the profile's TTL)
-- ARGV[2..]: triples (kind, name, ts): kind 's' a survey shown (name: the survey key), 't' a trigger
--   fired (name: its label, e.g. task_success:checkout); ts in epoch seconds.
-- Fields (prefixes from personalization/decision/surveys.py): 'last' the latest showing of any
-- survey; 's:<survey>' its latest showing and 'n:<survey>' how often it was shown — a showing at the
-- time already stored is a retry and is not counted again; 't:<trigger>' the latest firing.
-- Returns 1.
local key = KEYS[1]
for i = 2, #ARGV, 3 do
  local kind, name, ts = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if kind == 's' then
    local prev = tonumber(redis.call('HGET', key, 's:' .. name) or '-1')
    if ts ~= prev then
      if ts > prev then redis.call('HSET', key, 's:' .. name, ARGV[i + 2]) end
      redis.call('HINCRBY', key, 'n:' .. name, 1)
      local last = tonumber(redis.call('HGET', key, 'last') or '-1')
      if ts > last then redis.call('HSET', key, 'last', ARGV[i + 2]) end
    end
  else
    local prev = tonumber(redis.call('HGET', key, 't:' .. name) or '-1')
    if ts > prev then redis.call('HSET', key, 't:' .. name, ARGV[i + 2]) end
  end
end
redis.call('EXPIRE', key, tonumber(ARGV[1]))
return 1
