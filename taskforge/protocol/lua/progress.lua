-- progress: store running jobs' progress on their records and publish it, batched.
-- Fenced like finish.lua: a report from a run whose lease was reclaimed is dropped.
-- KEYS[1]     job key prefix
-- ARGV[1]     events channel ('' = none)
-- ARGV[2]     queue name
-- ARGV[3..]   per job, 4 values: id, lease token, fraction done (0..1), message
-- Returns     per job: 1 stored, 0 refused (stale token or not active)
-- The event is the job:updates contract with status 'active' plus 'progress' and
-- 'progress_message' fields.
local channel, queue = ARGV[1], ARGV[2]
local now = now_ms()
local out = {}
for a = 3, #ARGV, 4 do
  local id, fraction, message = ARGV[a], ARGV[a + 2], ARGV[a + 3]
  local key = KEYS[1] .. id
  local rec = redis.call('HMGET', key, 'v', 's', 't', 'n')
  if rec[1] ~= ARGV[a + 1] or rec[2] ~= 'a' then
    table.insert(out, 0)
  else
    redis.call('HSET', key, 'progress', fraction, 'progress_message', message)
    if channel ~= '' then
      redis.call('PUBLISH', channel, cjson.encode({job_id = id, task = rec[3], queue = queue,
        status = 'active', attempt = (as_count(rec[4]) or 0) + 1, timestamp = now / 1000,
        progress = tonumber(fraction), progress_message = message}))
    end
    table.insert(out, 1)
  end
end
return out
