-- The frequency-cap counter of one visitor and experience (personalization/decision/frequency.py):
-- a function write_batch.lua calls per exposure (that file embeds it through the writer, which
-- prepends this one), and the whole script on a cluster, where profile hashes are in other slots
-- than the stream and each counter is one call of its own.
--
-- vary_count(key, field, stamp): key the profile hash (vary:vh:{<visitor tag>}:p), field
--   'f:<experience>', stamp '<day> <week>' of the exposure. The value is
--   '<day> <n day> <week> <n week> <n all>'; a newer day or week starts at 1, an exposure from an
--   older day or week than the stored one (a late replay) counts only where it belongs.
local function vary_count(key, field, stamp)
  local day, week = string.match(stamp, '^(%d+) (%d+)$')
  day, week = tonumber(day), tonumber(week)
  if not day then return end
  local d, nd, w, nw, total = day, 0, week, 0, 0
  local raw = redis.call('HGET', key, field)
  if raw then
    local p = {}
    for token in string.gmatch(raw, '%S+') do p[#p + 1] = tonumber(token) end
    if #p == 5 then d, nd, w, nw, total = p[1], p[2], p[3], p[4], p[5] end
  end
  if d == day then nd = nd + 1 elseif d < day then d, nd = day, 1 end
  if w == week then nw = nw + 1 elseif w < week then w, nw = week, 1 end
  redis.call('HSET', key, field, string.format('%d %d %d %d %d', d, nd, w, nw, total + 1))
end
