-- enqueue: create job records and make them ready or scheduled, in one step.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     wake marker zset
-- KEYS[6]     job key prefix (record = prefix .. id; same hash tag)
-- KEYS[7]     unique lock prefix (lock = prefix .. unique key; same hash tag)
-- ARGV[1]     events channel ('' = none)
-- ARGV[2]     queue name
-- ARGV[3]     request token: random per call, the same when the call is sent again after its
--             reply was lost; stored as the record's 'enq', so the re-sent call answers 'new'
--             for the jobs it wrote itself the first time ('' = none)
-- ARGV[4..]   per job, 9 values: id, task, priority, envelope json, delay_ms (>= 0),
--             at_ms (absolute run time in ms, -1 = use delay), unique key ('' = none),
--             unique policy ('queued' | 'running' | 'ttl'), unique ttl in s (0 = none)
-- Returns     per job 2 values: status, and 'new' or 'existing:<id>'. A duplicate id or a held
--             unique key writes nothing and names the job that holds it.
local channel, queue, token = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
-- Numbers go to redis.call as text: Redis formats a Lua number argument with '%.17g', which
-- was a tenth of this script's server time (~4,500 instructions per number). now is written
-- once ('%d' of a whole number below 2^53 is the same text); the counters are literals.
local now_text = string.format('%d', now)
local out = {}
local woke = false
local ready = {{}, {}, {}}
local created = {}  -- ids this call wrote: a second copy of one in the same call is a duplicate
-- Whether the record at `key` was written by an earlier send of this very call.
local function ours(id, key)
  return token ~= '' and not created[id] and redis.call('HGET', key, 'enq') == token
end
for a = 4, #ARGV, 9 do
  local id, task, prio, env = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local delay_ms, at_ms = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local ukey, upolicy, uttl = ARGV[a + 6], ARGV[a + 7], tonumber(ARGV[a + 8])
  local key = KEYS[6] .. id
  local lock = KEYS[7] .. ukey
  local owner = nil
  if ukey ~= '' then
    owner = redis.call('GET', lock)
    -- A lock whose job record is gone (expired) no longer guards anything.
    if owner and redis.call('EXISTS', KEYS[6] .. owner) == 0 then owner = nil end
  end
  if owner or redis.call('EXISTS', key) == 1 then
    local holder = owner or id
    table.insert(out, redis.call('HGET', KEYS[6] .. holder, 'status'))
    if holder == id and ours(id, key) then
      table.insert(out, 'new')
    else
      table.insert(out, 'existing:' .. holder)
    end
  else
    local run_at = now + delay_ms
    if at_ms >= 0 then run_at = at_ms end
    local status = 'queued'
    if run_at > now then
      status = 'scheduled'
      redis.call('ZADD', KEYS[4], run_at, id)
    else
      table.insert(ready[PRIORITY_INDEX[prio]], id)
    end
    local run_at_text = now_text
    if run_at ~= now then run_at_text = run_at end
    redis.call('HSET', key, 'envelope', env, 'task', task, 'priority', prio, 'status', status,
      'attempts', '0', 'deliveries', '0', 'created_ms', now_text, 'enqueued_ms', now_text,
      'run_at_ms', run_at_text, 'enq', token)
    created[id] = true
    if ukey ~= '' then
      redis.call('HSET', key, 'unique_lock', lock, 'unique_until', upolicy)
      if uttl > 0 then
        redis.call('SET', lock, id, 'PX', math.max(1, math.floor(uttl * 1000)))
      else
        redis.call('SET', lock, id)
      end
    end
    woke = true
    emit(channel, id, task, queue, status, 1, now)
    table.insert(out, status)
    table.insert(out, 'new')
  end
end
-- Ready ids go in with one RPUSH per priority, in the order they came.
for p = 1, 3 do
  for i = 1, #ready[p], 4000 do
    redis.call('RPUSH', KEYS[p], unpack(ready[p], i, math.min(i + 3999, #ready[p])))
  end
end
if woke then redis.call('ZADD', KEYS[5], '0', 'w') end
return out
