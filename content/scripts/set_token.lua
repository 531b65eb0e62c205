-- Move the stored sync token on, but only on an existing content state: a token without its
-- items would be meaningless.
--
-- KEYS[1]: the content state hash (vary:content:state)
-- ARGV[1]: the new token ('' deletes the token field)
-- Returns 1 when set, 0 when nothing is stored.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '' then redis.call('HDEL', KEYS[1], 'token') else redis.call('HSET', KEYS[1], 'token', ARGV[1]) end
return 1
