-- queue_summary: one queue's depths and its recent per-minute counters, in one call (the
-- overview reads 100 queues with 100 calls in one pipeline, not 700 commands).
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     inflight zset
-- KEYS[6]     dead zset
-- KEYS[7]     stats key prefix (bucket of minute m is prefix .. ':' .. m)
-- ARGV[1]     first epoch minute
-- ARGV[2]     number of minutes
-- ARGV[3..]   counter names to read
-- Returns     {high, normal, low, scheduled, inflight, dead, then for each minute the named
--             counters in order (0 when absent)}
local out = {}
for i = 1, 3 do out[i] = redis.call('LLEN', KEYS[i]) end
for i = 4, 6 do out[i] = redis.call('ZCARD', KEYS[i]) end
local first = tonumber(ARGV[1])
for m = first, first + tonumber(ARGV[2]) - 1 do
  local vals = redis.call('HMGET', KEYS[7] .. ':' .. m, unpack(ARGV, 3))
  for _, v in ipairs(vals) do out[#out + 1] = tonumber(v) or 0 end
end
return out
