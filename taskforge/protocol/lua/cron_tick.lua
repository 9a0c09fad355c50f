-- cron_tick: claim due ticks of one periodic task and enqueue their jobs, in one step.
-- A compare-and-set on the last-tick marker lets exactly one scheduler claim a tick however many
-- workers run; the deterministic job id (cron:<name>:<tick ms>) is a second guard.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     wake marker zset
-- KEYS[5]     job key prefix (record = prefix .. id; same hash tag)
-- KEYS[6]     last-tick marker of this periodic (string, epoch ms; same hash tag)
-- ARGV[1]     events channel ('' = none)
-- ARGV[2]     queue name
-- ARGV[3]     the marker the caller read ('' = none yet)
-- ARGV[4]     the new marker, epoch ms
-- ARGV[5..]   per tick, 5 values and then pairs: job id, task, priority ('' = normal), tick
--             time in ms, n, then n field/value pairs the record stores as they are (enqueue.lua's)
-- Returns     {1, new marker} when claimed (jobs enqueued), or {0, current marker} when another
--             scheduler moved the marker first (nothing written)
local current = redis.call('GET', KEYS[6]) or ''
if current ~= ARGV[3] then return {0, current} end
redis.call('SET', KEYS[6], ARGV[4])
local channel, queue = ARGV[1], ARGV[2]
local now = now_ms()
local created = 0
local now_text = string.format('%d', now)
local a = 5
while a <= #ARGV do
  local id, task, prio, tick = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local first, last = a + 5, a + 4 + 2 * tonumber(ARGV[a + 4])
  a = last + 1
  local key = KEYS[5] .. id
  if redis.call('EXISTS', key) == 0 then
    -- The same record enqueue.lua writes for a job that is due now ('r': the tick it is for).
    if prio == '' then prio = 'normal' end
    redis.call('RPUSH', KEYS[PRIORITY_INDEX[prio]], id)
    redis.call('HSET', key, 't', task, 's', 'q', 'c', now_text, 'r', tick, unpack(ARGV, first, last))
    if prio ~= 'normal' then redis.call('HSET', key, 'p', prio) end
    emit(channel, id, task, queue, 'queued', 1, now)
    created = created + 1
  end
end
if created > 0 then redis.call('ZADD', KEYS[4], 0, 'w') end
return {1, ARGV[4]}
