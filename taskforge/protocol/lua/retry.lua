-- retry: put a failed leased job back into the scheduled set after its backoff.
-- KEYS[1]     inflight zset
-- KEYS[2]     scheduled zset
-- KEYS[3]     wake marker zset
-- KEYS[4]     job record
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3]     job id
-- ARGV[4]     lease token
-- ARGV[5]     backoff before the next attempt, ms
-- ARGV[6]     error type
-- ARGV[7]     error message
-- ARGV[8]     traceback
-- ARGV[9]     the failed run's duration, ms (for the event)
-- Returns     1 scheduled for retry, 0 refused (stale token or not active)
local key, id = KEYS[4], ARGV[3]
local rec = redis.call('HMGET', key, 'v', 's', 't', 'n', 'worker')
if rec[1] ~= ARGV[4] or rec[2] ~= 'a' then return 0 end
local now = now_ms()
local run_at = now + tonumber(ARGV[5])
-- Not HINCRBY: a count damaged while the job ran must not fail the script (the next fetch
-- validates the record and buries it if it is still unreadable).
local attempt = (as_count(rec[4]) or 0) + 1
redis.call('HSET', key, 's', 'r', 'r', string.format('%d', run_at), 'n', attempt,
  'error_type', ARGV[6],
  'error', ARGV[7], 'traceback', ARGV[8])
redis.call('ZREM', KEYS[1], id)
redis.call('ZADD', KEYS[2], run_at, id)
redis.call('ZADD', KEYS[3], 0, 'w')
local extra = {duration_ms = tonumber(ARGV[9]), worker = rec[5] or '', run_at = run_at / 1000}
emit(ARGV[1], id, rec[3], ARGV[2], 'retrying', attempt, now, ARGV[6] .. ': ' .. ARGV[7], extra)
return 1
