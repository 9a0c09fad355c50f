-- stats_series: a queue's per-minute counters over a run of minutes, in one call (the
-- dashboard's charts read an hour of 100 queues with 100 calls instead of 6,000 commands).
-- KEYS[1]     stats key prefix (bucket of minute m is prefix .. ':' .. m)
-- ARGV[1]     first epoch minute
-- ARGV[2]     number of minutes
-- ARGV[3..]   counter names to read
-- Returns     for each minute, the named counters in order (0 when absent): a flat list
local out = {}
local first = tonumber(ARGV[1])
for m = first, first + tonumber(ARGV[2]) - 1 do
  local vals = redis.call('HMGET', KEYS[1] .. ':' .. m, unpack(ARGV, 3))
  for _, v in ipairs(vals) do out[#out + 1] = tonumber(v) or 0 end
end
return out
