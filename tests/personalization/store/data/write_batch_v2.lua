-- vary write_batch v2: exposure record format 2 (personalization/store/formats.py). The version
-- is part of the text, so of the SHA the writer calls it by: old and new workers' scripts coexist.
--
-- One batch's part bound for one exposure stream, written atomically and at most once.
--
-- Sets the batch marker (SET NX EX) first: if it existed, this part already reached Redis (a
-- replayed batch) and nothing is written. Otherwise XADDs every exposure (MAXLEN ~ when bounded)
-- and HSETNXes each sticky assignment into its profile hash (single node only; on a cluster the
-- assignments are sent outside the script).
--
-- KEYS[1]: the stream, KEYS[2]: the batch marker ({<stream tag>}:batch:<id>),
--   KEYS[3..]: one profile hash per sticky assignment or counter
-- ARGV[1]: marker ttl (s), ARGV[2]: MAXLEN ('' = unbounded), ARGV[3]: exposure count n,
--   ARGV[4..3+n]: the exposures (msgspec JSON), then per assignment its field and variant;
-- A pair whose field starts 'f:' is a frequency-cap counter instead ('<day> <week>' of the
--   exposure): vary_count (exposure_count.lua, prepended by the writer) adds one to it.
-- Each entry: 'data' (the exposure as JSON) and 'v' '2' (its record format; absent = format 1).
-- Returns the exposures written, or -1 when the marker existed (nothing is written twice).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return -1 end
local n = tonumber(ARGV[3])
local maxlen = ARGV[2]
if maxlen == '' then
  for i = 4, 3 + n do redis.call('XADD', KEYS[1], '*', 'data', ARGV[i], 'v', '2') end
else
  for i = 4, 3 + n do redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'data', ARGV[i], 'v', '2') end
end
local a = 4 + n
for k = 3, #KEYS do
  if string.sub(ARGV[a], 1, 2) == 'f:' then
    vary_count(KEYS[k], ARGV[a], ARGV[a + 1])
  else
    redis.call('HSETNX', KEYS[k], ARGV[a], ARGV[a + 1])
  end
  a = a + 2
end
return n
