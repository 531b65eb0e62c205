-- Recording an event, half 1 of 2 (the visitor's slot): count it into the visitor's profile, once.
--
-- Sets the visitor-slot marker of the event id first (SET NX EX); if it was already set the event
-- was counted before and nothing happens. Otherwise: a new visit when there was no last_seen, the
-- session changed, or (no session) the gap since last_seen exceeds the session timeout; then
-- first_seen / last_seen, the channel flag, page_views, conversions and the goal counter, and the
-- profile's TTL is refreshed.
--
-- KEYS[1]: the profile hash (vary:vh:{<visitor tag>}:p, personalization/store/keys.py)
-- KEYS[2]: the marker of this event id (vary:vh:{<visitor tag>}:e:<event id>)
-- ARGV[1] ts, [2] session id ('' none), [3] channel ('' none), [4] page view '1'/'0',
--   [5] conversion goal ('' none), [6] session timeout (s), [7] profile ttl (s), [8] marker ttl (s)
-- KEYS[3]: the history hash (vary:vh:{<visitor tag>}:h); ARGV[9] its field ('' none: the event is not
--   kept there), [10] timestamps kept, [11] fields of that kind kept. vary_history is defined by
--   personalization/store/scripts/history_record.lua, which the recorder prepends to this script.
-- KEYS[4]: the traits hash (vary:vh:{<visitor tag>}:tr); ARGV[12] most traits,
--   [13] most bytes, [16..] pairs of trait name, JSON value (an identify event's traits; none for
--   other events). vary_traits is defined by personalization/store/scripts/traits_merge.lua, which the
--   recorder prepends too; a merge over a bound is skipped (the API refused it before, naming the trait).
-- KEYS[5]: the survey state hash (vary:vh:{<visitor tag>}:sv); ARGV[14] what the event notes there
--   ('s' a survey shown, 't' a watched trigger fired, '' nothing), [15] the survey key or trigger
--   label. vary_survey_note is defined by personalization/store/scripts/survey_note.lua, which the
--   recorder prepends too: behind the marker, a replayed or retried event moves the cap only once.
-- Returns 1 when counted now, 0 when the marker existed (already counted).
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', tonumber(ARGV[8])) == false then return 0 end
local key = KEYS[1]
local ts = tonumber(ARGV[1])
local last = tonumber(redis.call('HGET', key, 'last_seen') or '0')
local session = ARGV[2]
local new_visit = false
if last == 0 then
  new_visit = true
elseif session ~= '' then
  if redis.call('HGET', key, 'session') ~= session then new_visit = true end
elseif ts - last > tonumber(ARGV[6]) then
  new_visit = true
end
if new_visit then redis.call('HINCRBY', key, 'visits', 1) end
if session ~= '' then redis.call('HSET', key, 'session', session) end
redis.call('HSETNX', key, 'first_seen', ARGV[1])
if ts > last then redis.call('HSET', key, 'last_seen', ARGV[1]) end
if ARGV[3] ~= '' then redis.call('HSET', key, 'ch:' .. ARGV[3], 1) end
if ARGV[4] == '1' then redis.call('HINCRBY', key, 'page_views', 1) end
if ARGV[5] ~= '' then
  redis.call('HINCRBY', key, 'conversions', 1)
  redis.call('HINCRBY', key, 'g:' .. ARGV[5], 1)
end
if ARGV[9] ~= '' then
  vary_history(KEYS[3], ARGV[9], ts, tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[7]))
end
if ARGV[14] ~= '' then
  vary_survey_note(KEYS[5], ARGV[14], ARGV[15], ARGV[1], tonumber(ARGV[7]))
end
if #ARGV >= 16 then
  vary_traits(KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[12]), tonumber(ARGV[13]), ARGV, 16)
end
redis.call('EXPIRE', key, tonumber(ARGV[7]))
return 1
