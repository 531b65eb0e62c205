-- vary write_batch v3: exposure record format 2 (personalization/store/formats.py). The version
-- is part of the text, so of the SHA the writer calls it by: old and new workers' scripts coexist.
--
-- One batch's part bound for one exposure stream, written atomically and at most once.
--
-- Sets the batch marker (SET NX EX) first: if it existed, this part already reached Redis (a
-- replayed batch) and nothing is written. Otherwise XADDs every exposure (MAXLEN ~ when bounded)
-- and sets each sticky assignment (HSETNX semantics: the first variant stays) and frequency-cap
-- counter into its profile hash (single node only; on a cluster they are sent outside the script).
--
-- KEYS[1]: the stream, KEYS[2]: the batch marker ({<stream tag>}:batch:<id>),
--   KEYS[3..]: one profile hash per sticky assignment or counter
-- ARGV[1]: marker ttl (s), ARGV[2]: MAXLEN ('' = unbounded), ARGV[3]: exposure count n,
--   ARGV[4..3+n]: the exposures (msgspec JSON), then per assignment its field and variant;
-- A pair whose field starts 'f:' is a frequency-cap counter instead ('<day> <week>' of the
--   exposure): vary_counted (exposure_count.lua, prepended by the writer) adds one to it.
-- Each entry: 'data' (the exposure as JSON) and 'v' '2' (its record format; absent = format 1).
-- Returns the exposures written, or -1 when the marker existed (nothing is written twice).
--
-- v3 (issue 22): the writer sends a visitor's pairs adjacently, so KEYS[3..] come in runs of one
-- profile hash. Each run is one HMGET of the fields it touches and one HSET of those that change,
-- counted in memory in order (a field twice in a run sees its earlier value), instead of an HGET
-- and HSET per counter and an HSETNX per assignment (a lone assignment is still one HSETNX): every
-- redis.call costs Valkey CPU beyond its command. Measured on 20 requests of 4 exposures, 2-3
-- counters and 2-3 assignments: 16.1 -> 12.8 us of EVALSHA per request for new visitors, 19.1 ->
-- 18.6 for returning ones. The hashes end exactly as v2 left them, field order included
-- (tests/personalization/store/test_write_batch_calls.py runs both on the same batches).
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return -1 end
local n = tonumber(ARGV[3])
local maxlen = ARGV[2]
if maxlen == '' then
  for i = 4, 3 + n do redis.call('XADD', KEYS[1], '*', 'data', ARGV[i], 'v', '2') end
else
  for i = 4, 3 + n do redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'data', ARGV[i], 'v', '2') end
end
local KEYS, ARGV, byte, unpack = KEYS, ARGV, string.byte, unpack
-- Reused across runs (arrays, not tables per run: Lua's allocations would cost what the calls saved):
-- fields[1..m] the run's distinct fields, at[p] the index in fields of its p-th pair's field,
-- dirty[i] whether fields[i] changes, args the HSET's arguments. fresh: stamp -> a counter's first
-- value (none stored yet), computed once per stamp: a batch's new visitors share a few stamps.
local fields, at, dirty, args, fresh = {}, {}, {}, {}, {}
local last, k, a = #KEYS, 3, 4 + n -- a: ARGV index of KEYS[k]'s field
while k <= last do
  local key, j, m = KEYS[k], k, 0
  repeat -- the run is KEYS[k..j-1]; at most 256 pairs, so unpack stays far below Lua's stack limit
    local field, i = ARGV[a + 2 * (j - k)], 1
    while i <= m and fields[i] ~= field do i = i + 1 end
    if i > m then m = i; fields[i] = field; dirty[i] = false end
    at[j - k + 1] = i
    j = j + 1
  until j > last or KEYS[j] ~= key or j - k == 256
  local f1, f2 = byte(fields[1], 1, 2)
  if j - k == 1 and not (f1 == 102 and f2 == 58) then
    redis.call('HSETNX', key, fields[1], ARGV[a + 1]) -- a lone assignment: one call either way
  else
    local value = redis.call('HMGET', key, unpack(fields, 1, m)) -- false: absent
    local changes = 0
    for p = 1, j - k do
      local i, b, new = at[p], a + 2 * p - 2, nil
      f1, f2 = byte(fields[i], 1, 2)
      if f1 == 102 and f2 == 58 then -- 'f:' a counter, counted as vary_count counts it
        local stored, stamp = value[i], ARGV[b + 1]
        if stored then
          new = vary_counted(stored, stamp)
        else
          new = fresh[stamp]
          if new == nil then new = vary_counted(false, stamp) or false; fresh[stamp] = new end
        end
      elseif not value[i] then -- an assignment: the first variant stays
        new = ARGV[b + 1]
      end
      if new then
        value[i] = new
        if not dirty[i] then dirty[i] = true; changes = changes + 1; args[changes] = i end
      end
    end
    if changes > 0 then -- in the order v2 set them: a new field takes the same place in the hash
      for c = changes, 1, -1 do -- backwards: args[c] (a fields index) is read before it is overwritten
        local i = args[c]
        args[2 * c - 1], args[2 * c] = fields[i], value[i]
      end
      redis.call('HSET', key, unpack(args, 1, 2 * changes))
    end
  end
  a = a + 2 * (j - k)
  k = j
end
return n
