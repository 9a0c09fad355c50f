-- enqueue: create job records and make them ready or scheduled, in one step.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     wake marker zset
-- KEYS[6]     job key prefix (record = prefix .. id; same hash tag)
-- KEYS[7]     unique lock prefix (lock = prefix .. unique key; same hash tag)
-- ARGV[1]     events channel ('' = none)
-- ARGV[2]     queue name
-- ARGV[3]     request token: random per call, the same when the call is sent again after its
--             reply was lost, so the re-sent call answers 'new' for the jobs it wrote itself
--             the first time ('' = none). Stored as the record's 'enq' only for a caller-given
--             id: a generated id is 96 random bits, so a record with it can only be this
--             call's own earlier write
-- ARGV[4..]   per job, 4 values and then pairs: id, task, how, n, then n field/value pairs the
--             record stores as they are ('a' args, 'k' kwargs, 'o' options, 'g' signature,
--             only what the job does not leave to its default). how is '' for a generated
--             id of a normal-priority job due now without a unique key (nearly all), else
--             'priority|run|unique policy|unique ttl s|given|unique key': priority '' =
--             normal, run '' = now, '+<ms>' = after a delay, '@<ms>' = at that epoch time;
--             unique key '' = none, policy 'queued' | 'running' | 'ttl', ttl '' or 0 = none;
--             given 'i' when the caller chose the id, else '' (a generated id)
-- Returns     per job 2 values: status, and 'new' or 'existing:<id>'. A duplicate id or a held
--             unique key writes nothing and names the job that holds it.
-- The record (README "Redis data model"): 't' task, 's' status letter, 'c' created ms, then
-- 'p' priority only when not normal, 'r' run-at ms only when not now, and the pairs.
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
local function ours(id, key, given)
  if token == '' or created[id] then return false end
  return not given or redis.call('HGET', key, 'enq') == token
end
local a = 4
while a <= #ARGV do
  local id, task, how, n = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local first, last = a + 4, a + 3 + 2 * n
  a = last + 1
  local prio, run, upolicy, uttl, given, ukey = 'normal', '', 'running', 0, false, ''
  if how ~= '' then
    local p, r, up, ut, g, uk = string.match(how, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if p ~= '' then prio = p end
    run, upolicy, uttl, given, ukey = r, up, tonumber(ut) or 0, g == 'i', uk
  end
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
    table.insert(out, WORD[redis.call('HGET', KEYS[6] .. holder, 's')] or 'dead')
    if holder == id and ours(id, key, given) then
      table.insert(out, 'new')
    else
      table.insert(out, 'existing:' .. holder)
    end
  else
    local run_at = now
    local mark = string.sub(run, 1, 1)
    if mark == '+' then
      run_at = now + tonumber(string.sub(run, 2))
    elseif mark == '@' then
      run_at = tonumber(string.sub(run, 2))
    end
    local status = 'queued'
    if run_at > now then
      status = 'scheduled'
      redis.call('ZADD', KEYS[4], run_at, id)
    else
      table.insert(ready[PRIORITY_INDEX[prio]], id)
    end
    redis.call('HSET', key, 't', task, 's', LETTER[status], 'c', now_text,
      unpack(ARGV, first, last))
    if prio ~= 'normal' then redis.call('HSET', key, 'p', prio) end
    if given and token ~= '' then redis.call('HSET', key, 'enq', token) end
    if run_at ~= now then redis.call('HSET', key, 'r', string.format('%d', run_at)) end
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
