#!lua flags=allow-oom
-- (allow-oom: leases are renewed even at maxmemory, so a worker whose outcomes Redis refuses
-- keeps its jobs; ZADD XX of an existing member does not grow memory.)
-- extend: renew the leases of running jobs, batched (the lease keeper calls it every lease/3).
-- KEYS[1]     inflight zset
-- KEYS[2]     job key prefix
-- ARGV[1]     new lease length from now, ms
-- ARGV[2..]   per job, 2 values: id, lease token
-- Returns     {{ids whose lease is no longer this worker's}, {ids whose cancel was requested}}
local now = now_ms()
local deadline = now + tonumber(ARGV[1])
local lost, cancel = {}, {}
for a = 2, #ARGV, 2 do
  local id = ARGV[a]
  local rec = redis.call('HMGET', KEYS[2] .. id, 'v', 's', 'cancel')
  if rec[1] == ARGV[a + 1] and rec[2] == 'a' and redis.call('ZSCORE', KEYS[1], id) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, id)
    if rec[3] == '1' then table.insert(cancel, id) end
  else
    table.insert(lost, id)
  end
end
return {lost, cancel}
