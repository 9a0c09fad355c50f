-- revive: move dead-lettered jobs back to their ready list with a fresh retry budget.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     dead zset
-- KEYS[5]     wake marker zset
-- KEYS[6]     job key prefix
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3..]   job ids
-- Returns     number of jobs requeued. Ids not in the dead set are skipped; a dead id without
--             a runnable record (foreign bytes buried as poison) stays dead, never dropped.
local now = now_ms()
local moved = 0
for a = 3, #ARGV do
  local id = ARGV[a]
  local key = KEYS[6] .. id
  local rec = redis.call('HMGET', key, 'p', 't', 's')
  local prio = rec[1] or 'normal'
  if rec[3] and PRIORITY_INDEX[prio] and redis.call('ZREM', KEYS[4], id) == 1 then
    redis.call('RPUSH', KEYS[PRIORITY_INDEX[prio]], id)
    redis.call('HSET', key, 's', 'q', 'e', string.format('%d', now))
    redis.call('HDEL', key, 'finished_ms', 'waiters', 'n', 'lost')
    emit(ARGV[1], id, rec[2], ARGV[2], 'queued', 1, now)
    moved = moved + 1
  end
end
if moved > 0 then redis.call('ZADD', KEYS[5], 0, 'w') end
return moved
