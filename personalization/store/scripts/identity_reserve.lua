-- Linking an id to a person, step 1 (the person's slot): reserve a place among its linked ids.
--
-- KEYS[1]: the person's linked ids (vary:vh:{<person tag>}:ids, hash id → '0' reserved, '1' merged)
-- ARGV[1]: the id, ARGV[2]: most ids per person, ARGV[3]: ttl (s)
-- Returns 1 when the id is (now) among them, 0 when the person is full (nothing written).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], '0')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
