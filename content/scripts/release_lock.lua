-- Release the sync lock only if we still hold it (compare-and-delete of our random token).
--
-- KEYS[1]: the lock key (vary:content:sync-lock)
-- ARGV[1]: the token this worker set when it took the lock
-- Returns 1 when deleted, 0 when the lock is gone or held by another worker.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
