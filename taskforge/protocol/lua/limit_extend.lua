-- limit_extend: renew the concurrency slots of running jobs of one task.
-- KEYS[1]     running zset of the task (job id -> slot deadline, ms)
-- ARGV[1]     new slot lease from now, ms
-- ARGV[2..]   job ids
-- Returns     how many slots were renewed (a lapsed slot is not re-taken)
local deadline = now_ms() + tonumber(ARGV[1])
local renewed = 0
for a = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', deadline, ARGV[a])
end
return renewed
