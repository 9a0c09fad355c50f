-- limit_acquire: take one of a task's cluster-wide concurrency slots for a job.
-- Slots are leased (id -> deadline): a dead worker's slot frees itself when its lease lapses.
-- KEYS[1]     running zset of the task (job id -> slot deadline, ms)
-- ARGV[1]     most jobs of the task running at once
-- ARGV[2]     slot lease, ms (the worker renews it with its job leases)
-- ARGV[3]     job id
-- Returns     0 when the slot is taken (or already held by this job), else ms until the
--             earliest held slot lapses (a hint; releases usually come sooner)
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  return 0
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(first[2]) - now)
