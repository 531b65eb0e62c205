-- Pause one variant of one experience, once (personalization/store/pauses.py).
-- KEYS[1] the pauses hash (experience key -> JSON {"<variant>": {"reason", "metric", "at", "phase"}})
-- ARGV[1] experience key, ARGV[2] variant, ARGV[3] the pause record (JSON)
-- Returns 1 when this call paused the variant, 0 when it already was paused (so exactly one caller,
-- whichever process gets here first, emits the sink event).
local raw = redis.call('HGET', KEYS[1], ARGV[1])
local paused = {}
if raw then
  paused = cjson.decode(raw)
  if paused[ARGV[2]] ~= nil then
    return 0
  end
end
paused[ARGV[2]] = cjson.decode(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(paused))
return 1
