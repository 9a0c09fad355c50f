-- finish: record final outcomes of leased jobs (succeeded, dead or cancelled), batched.
-- Fenced: an outcome whose lease token is not the job's current one is refused, so a worker
-- whose job was reclaimed cannot overwrite the new run; a repeated finish is a no-op.
-- KEYS[1]     inflight zset
-- KEYS[2]     dead zset
-- KEYS[3]     job key prefix
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3]     retention of succeeded/cancelled records, s (dead records are kept)
-- ARGV[4..]   per job, 7 values: id, lease token, status ('succeeded'|'dead'|'cancelled'),
--             result json ('' = none), error type, error message, traceback
-- Returns     per job: 1 recorded, 0 refused (stale token or not active)
local channel, queue, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
for a = 4, #ARGV, 7 do
  local id, token, status = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local key = KEYS[3] .. id
  local rec = redis.call('HMGET', key, 'deliveries', 'status', 'task')
  if rec[1] ~= token or rec[2] ~= 'active' then
    table.insert(out, 0)
  else
    local attempt = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'status', status, 'finished_ms', now)
    if ARGV[a + 3] ~= '' then redis.call('HSET', key, 'result', ARGV[a + 3]) end
    local err = ARGV[a + 5]
    if err ~= '' then
      redis.call('HSET', key, 'error_type', ARGV[a + 4], 'error', err, 'traceback', ARGV[a + 6])
    end
    redis.call('ZREM', KEYS[1], id)
    if status == 'dead' then
      redis.call('ZADD', KEYS[2], now, id)
      release_unique(key, id, 'any')
    else
      redis.call('EXPIRE', key, ttl)
      release_unique(key, id, status == 'succeeded' and 'running' or 'any')
    end
    notify(key, status, ttl)
    local shown = ''
    if err ~= '' then shown = ARGV[a + 4] .. ': ' .. err end
    emit(channel, id, rec[3], queue, status, attempt, now, shown)
    table.insert(out, 1)
  end
end
return out
