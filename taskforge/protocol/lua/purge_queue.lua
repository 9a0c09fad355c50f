-- purge_queue: empty a queue's ready lists and scheduled set in one step. The id lists move
-- whole (RENAME, O(1)) to graveyard keys that purge_drain.lua then deletes with their records a
-- batch at a time, so a purge of a million jobs is atomic for the queue and never blocks Redis.
-- Jobs in flight and dead letters are left alone.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     set of purge tokens whose graveyards are still draining
-- KEYS[6]     graveyard key prefix (graveyard i of token t is prefix .. t .. ':' .. i)
-- ARGV[1]     purge token (random, unique per call)
-- Returns     {high, normal, low, scheduled}: jobs taken out of the queue
local out = {}
local total = 0
for i = 1, 4 do
  local n
  if i < 4 then n = redis.call('LLEN', KEYS[i]) else n = redis.call('ZCARD', KEYS[i]) end
  out[i] = n
  total = total + n
  if n > 0 then redis.call('RENAME', KEYS[i], KEYS[6] .. ARGV[1] .. ':' .. i) end
end
if total > 0 then redis.call('SADD', KEYS[5], ARGV[1]) end
return out
