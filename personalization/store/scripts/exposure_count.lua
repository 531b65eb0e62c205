-- The frequency-cap counter of one visitor and experience (personalization/decision/frequency.py):
-- functions write_batch.lua uses (that file embeds them through the writer, which prepends this
-- one), and the whole script on a cluster, where profile hashes are in other slots than the stream
-- and each counter is one call of its own.
--
-- The value is '<day> <n day> <week> <n week> <n all>'; a newer day or week starts at 1, an
-- exposure from an older day or week than the stored one (a late replay) counts only where it
-- belongs. A stored value without five numbers counts as none; a malformed stamp counts nothing.
--
-- vary_counted(raw, stamp): the value after one more exposure stamped '<day> <week>' over the
--   stored value raw (false or nil: none yet), or nil when the stamp is malformed. Pure, so the
--   batch script can count a visitor's exposures in memory between one HMGET and one HSET.
local function vary_counted(raw, stamp)
  local day, week = string.match(stamp, '^(%d+) (%d+)$')
  day, week = tonumber(day), tonumber(week)
  if not day then return nil end
  local d, nd, w, nw, total = day, 0, week, 0, 0
  if raw then
    local p = {}
    for token in string.gmatch(raw, '%S+') do p[#p + 1] = tonumber(token) end
    if #p == 5 then d, nd, w, nw, total = p[1], p[2], p[3], p[4], p[5] end
  end
  if d == day then nd = nd + 1 elseif d < day then d, nd = day, 1 end
  if w == week then nw = nw + 1 elseif w < week then w, nw = week, 1 end
  return string.format('%d %d %d %d %d', d, nd, w, nw, total + 1)
end

-- vary_count(key, field, stamp): one counter counted in Redis. key the profile hash
--   (vary:vh:{<visitor tag>}:p), field 'f:<experience>', stamp '<day> <week>' of the exposure.
local function vary_count(key, field, stamp)
  local value = vary_counted(redis.call('HGET', key, field), stamp)
  if value then redis.call('HSET', key, field, value) end
end
