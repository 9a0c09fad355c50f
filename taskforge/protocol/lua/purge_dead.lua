-- purge_dead: delete dead-lettered jobs for good, each only if it is still dead. The check and
-- the delete are one step, so a concurrent revive either wins (the job is requeued and kept) or
-- loses (the job is gone): a purge can never delete a job that is live again.
-- KEYS[1]     dead zset
-- KEYS[2]     job key prefix
-- ARGV[1..]   job ids
-- Returns     number of jobs deleted
local n = 0
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local key = KEYS[2] .. id
    redis.call('DEL', key, done_key(key))
    n = n + 1
  end
end
return n
