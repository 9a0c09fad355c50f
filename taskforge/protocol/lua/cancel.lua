-- cancel: cancel a queued or scheduled job at once; flag a running one for abort.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     job record
-- KEYS[6]     workflow outbox zset (a cancelled member's workflow advances from it)
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3]     job id
-- ARGV[4]     retention of the cancelled record, s
-- ARGV[5]     control channel that running workers listen on
-- Returns     {outcome, status}: outcome 'cancelled', 'requested' (running; the worker aborts it),
--             'final' (already ended) or 'missing'
local key, id = KEYS[5], ARGV[3]
local rec = redis.call('HMGET', key, 's', 'p', 't', 'n')
if not rec[1] then return {'missing', ''} end
local st = WORD[rec[1]] or 'dead'
rec[2] = rec[2] or 'normal'
local now = now_ms()
if st == 'queued' or st == 'scheduled' or st == 'retrying' then
  if st == 'queued' then
    -- A damaged priority names no list: look in all three rather than fail.
    for p = 1, 3 do
      if PRIORITY_INDEX[rec[2]] == p or not PRIORITY_INDEX[rec[2]] then
        redis.call('LREM', KEYS[p], 1, id)
      end
    end
  else
    redis.call('ZREM', KEYS[4], id)
  end
  redis.call('HSET', key, 's', 'c', 'finished_ms', now, 'error_type', 'Cancelled',
    'error', 'cancelled before it ran')
  redis.call('EXPIRE', key, tonumber(ARGV[4]))
  release_unique(key, id, 'any')
  notify(key, 'cancelled', tonumber(ARGV[4]))
  emit(ARGV[1], id, rec[3], ARGV[2], 'cancelled', (as_count(rec[4]) or 0) + 1, now)
  if KEYS[6] and string.sub(id, 1, 3) == 'wf:' then redis.call('ZADD', KEYS[6], now, id) end
  return {'cancelled', 'cancelled'}
end
if st == 'active' then
  redis.call('HSET', key, 'cancel', '1')
  redis.call('PUBLISH', ARGV[5], id)
  return {'requested', st}
end
return {'final', st}
