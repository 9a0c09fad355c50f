-- requeue: hand leased jobs back to the front of their ready list (worker shutdown, or a job
-- that must wait for a rate or concurrency limit). The attempt is not counted.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     inflight zset
-- KEYS[5]     scheduled zset
-- KEYS[6]     wake marker zset
-- KEYS[7]     job key prefix
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3]     delay before the job is ready again, ms (0 = at once, to the front of its list)
-- ARGV[4..]   per job, 2 values: id, lease token
-- Returns     per job: 1 handed back, 0 refused (stale token or not active)
local channel, queue, delay_ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local out = {}
-- Last to first: each LPUSH goes in front of the one before, so the jobs keep their order.
local n = (#ARGV - 3) / 2
for j = n, 1, -1 do
  local a = 4 + (j - 1) * 2
  local id = ARGV[a]
  local key = KEYS[7] .. id
  local rec = redis.call('HMGET', key, 'v', 's', 't', 'p', 'n')
  rec[4] = rec[4] or 'normal'
  rec[5] = rec[5] or '0'
  out[j] = 0
  if rec[1] == ARGV[a + 1] and rec[2] == 'a' then
    redis.call('ZREM', KEYS[4], id)
    local attempt = (as_count(rec[5]) or 0) + 1
    if delay_ms > 0 or unreadable(rec[4], rec[5]) then
      -- A record damaged while leased goes through the scheduled set: the next fetch's
      -- promotion validates it and buries it as poison (this script has no dead set).
      redis.call('ZADD', KEYS[5], now + delay_ms, id)
      redis.call('HSET', key, 's', 's', 'r', string.format('%d', now + delay_ms))
      emit(channel, id, rec[3], queue, 'scheduled', attempt, now)
    else
      redis.call('LPUSH', KEYS[PRIORITY_INDEX[rec[4]]], id)
      redis.call('HSET', key, 's', 'q', 'e', string.format('%d', now))
      emit(channel, id, rec[3], queue, 'queued', attempt, now)
    end
    out[j] = 1
  end
end
redis.call('ZADD', KEYS[6], 0, 'w')
return out
