-- Recording an event, half 2 of 2 (the stream's slot): append it to the events stream, once.
--
-- KEYS[1]: the events stream (or its partition)
-- KEYS[2]: the stream-slot marker of this event ({<stream tag>}:e:<digest of visitor and event id>)
-- ARGV[1]: marker ttl (s), ARGV[2]: the event as msgspec JSON (the entry's 'data' field)
-- Returns 1 when appended now, 0 when the marker existed (already appended).
if redis.call('SET', KEYS[2], 1, 'NX', 'EX', tonumber(ARGV[1])) == false then return 0 end
redis.call('XADD', KEYS[1], '*', 'data', ARGV[2])
return 1
