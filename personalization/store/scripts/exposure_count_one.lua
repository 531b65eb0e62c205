-- One frequency-cap counter on its own (a cluster, where the profile hash is not in the stream's
-- slot); vary_count is defined by exposure_count.lua, which the writer prepends.
-- KEYS[1]: the profile hash (vary:vh:{<visitor tag>}:p); ARGV[1] 'f:<experience>', [2] '<day> <week>'
vary_count(KEYS[1], ARGV[1], ARGV[2])
return 1
