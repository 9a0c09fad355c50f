#!lua
-- (Script flags, Redis 7: none, so unlike the flagless scripts Redis refuses the whole fetch up
-- front at maxmemory instead of letting it write once an earlier write dirtied it: a full Redis
-- leases nothing, promotes nothing, and reclaims nothing while the leases' owners cannot write.)
-- fetch: promote due jobs, reclaim expired leases, then lease up to ARGV[1] ready jobs.
-- Popping and recording in flight happen in this one script, so no job is ever out of Redis.
-- KEYS[1..3]  ready lists high, normal, low
-- KEYS[4]     scheduled zset
-- KEYS[5]     inflight zset (id -> lease deadline ms)
-- KEYS[6]     wake marker zset
-- KEYS[7]     dead zset
-- KEYS[8]     job key prefix
-- ARGV[1]     how many jobs to lease (0 = housekeeping only)
-- ARGV[2]     lease length, ms
-- ARGV[3]     worker id (recorded on the job)
-- ARGV[4]     events channel
-- ARGV[5]     queue name
-- ARGV[6]     most jobs to promote or reclaim in this call
-- ARGV[7]     deliveries lost to dead workers before a job is buried as poison
-- ARGV[8]     request id ('' = none): a call re-sent with the id of one whose reply was lost
--             gets that call's leases again (those still its own) instead of new ones
-- ARGV[9]     request id whose reply arrived, so its record can go ('' = none)
-- KEYS[9]     request record prefix (record = prefix .. request id: the leases it handed out)
-- KEYS[10]    workflow outbox zset: a member this script ends (poison, cancelled) is noted there,
--             as finish.lua does, so its workflow advances (fails) from the outbox replay
-- Returns     {ms until the next scheduled job is due (-1 = none), ms until the next lease
--              expires (-1 = none), then per leased job 10 values: id, lease token, attempts
--              so far, and its record's t, c, a, k, o, p, g (task, created ms, args json,
--              kwargs json, options json, priority, signature; '' where the record has none)}
local want, lease_ms, worker, channel = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local queue, batch, max_lost = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local request, answered = ARGV[8], ARGV[9]
local prefix = KEYS[8]
local now = now_ms()
-- Numbers go to redis.call as text: Redis formats a Lua number argument with '%.17g', which
-- costs thousands of instructions for a 13-digit time. Whole numbers below 2^53 are written
-- with '%d' (the same text); anything else is passed as it was.
local function int_text(n)
  if n == math.floor(n) and n > -2 ^ 53 and n < 2 ^ 53 then return string.format('%d', n) end
  return n
end
local now_text = int_text(now)
local batch_text = int_text(batch)
if answered ~= '' then redis.call('DEL', KEYS[9] .. answered) end
local replay = nil
if request ~= '' then replay = redis.call('GET', KEYS[9] .. request) end

-- A workflow member ('wf:<workflow>:<node>') that ends here: in the same script as its end.
local function ended(id)
  if KEYS[10] and string.sub(id, 1, 3) == 'wf:' then redis.call('ZADD', KEYS[10], now, id) end
end
local function bury(key, id, why)
  bury_unreadable(key, id, KEYS[7], why, channel, queue, now)
  ended(id)
end

-- Promote due scheduled and retrying jobs.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_text, 'LIMIT', '0', batch_text)
for _, id in ipairs(due) do
  local key = prefix .. id
  local rec, why = read_job(key, 't')
  if not rec then
    bury(key, id, why)
  else
    redis.call('RPUSH', KEYS[PRIORITY_INDEX[rec[1]]], id)
    redis.call('HSET', key, 's', 'q', 'e', now_text)
    emit(channel, id, rec[4], queue, 'queued', tonumber(rec[2]) + 1, now)
  end
end
if #due > 0 then redis.call('ZREM', KEYS[4], unpack(due)) end

-- Reclaim jobs whose lease expired: their worker died or lost Redis for too long.
local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now_text, 'LIMIT', '0', batch_text)
for _, id in ipairs(expired) do
  local key = prefix .. id
  local rec, why = read_job(key, 't', 'cancel', 'lost')
  if not rec then
    bury(key, id, why)
  else
    local priority, task, cancelled = rec[1], rec[4], rec[5] == '1'
    local attempt = tonumber(rec[2]) + 1
    local lost = (as_count(rec[6]) or 0) + 1
    redis.call('HSET', key, 'lost', lost)
    if cancelled then
      -- Cancelled while running, and its worker is gone: it stays cancelled.
      redis.call('HSET', key, 's', 'c', 'finished_ms', now_text)
      redis.call('EXPIRE', key, 86400)
      release_unique(key, id, 'any')
      notify(key, 'cancelled', 3600)
      emit(channel, id, task, queue, 'cancelled', attempt, now)
      ended(id)
    elseif lost >= max_lost then
      local err = 'poison: its worker was lost ' .. lost .. ' times while running it'
      redis.call('HSET', key, 's', 'x', 'error', err, 'error_type', 'PoisonJob',
        'finished_ms', now_text)
      redis.call('ZADD', KEYS[7], now, id)
      release_unique(key, id, 'any')
      notify(key, 'dead', 3600)
      emit(channel, id, task, queue, 'dead', attempt, now, err)
      ended(id)
    else
      redis.call('LPUSH', KEYS[PRIORITY_INDEX[priority]], id)
      redis.call('HSET', key, 's', 'q', 'e', now_text)
      emit(channel, id, task, queue, 'queued', attempt, now)
    end
  end
end
if #expired > 0 then redis.call('ZREM', KEYS[5], unpack(expired)) end

-- Lease ready jobs in strict priority order (LMPOP takes from the first non-empty list). Per job:
-- one HMGET, one HSET and the event; the inflight entries go in with one ZADD per batch.
local out = {-1, -1}
local remaining = want
if replay then
  -- The same request again: its reply was lost. Return what it leased and still holds.
  remaining = 0
  local renewed = {}
  for _, lease in ipairs(cjson.decode(replay)) do
    local key = prefix .. lease[1]
    local rec = redis.call('HMGET', key, 'v', 's', 'n', 't', 'c', 'a', 'k', 'o', 'p', 'g')
    local deadline = tonumber(redis.call('ZSCORE', KEYS[5], lease[1]))
    if rec[4] and rec[1] == lease[2] and rec[2] == 'a' and deadline and deadline > now then
      -- A full lease again: the worker that lost the reply may have been away a while.
      table.insert(renewed, now + lease_ms)
      table.insert(renewed, lease[1])
      for _, v in ipairs({lease[1], tonumber(lease[2]), tonumber(rec[3]) or 0}) do
        table.insert(out, v)
      end
      for i = 4, 10 do table.insert(out, rec[i] or '') end
    end
  end
  zadd_all(KEYS[5], renewed)
  if #renewed > 0 then redis.call('PEXPIRE', KEYS[9] .. request, lease_ms) end
end
local granted = {}
local deadline_text = int_text(now + lease_ms)
while remaining > 0 do
  local popped = redis.call('LMPOP', '3', KEYS[1], KEYS[2], KEYS[3], 'LEFT', 'COUNT',
    int_text(remaining))
  if not popped then break end
  local leases = {}
  for _, id in ipairs(popped[2]) do
    local key = prefix .. id
    local job, why = read_job(key, 't', 'v', 'unique_lock', 'c', 'a', 'k', 'o', 'g')
    if job and not job[4] then why = 'unreadable job record: task is missing' end
    if why then
      -- It cannot run (nor be handed back or retried): bury it as poison, seen, never dropped.
      bury(key, id, why)
    else
      local task, attempts = job[4], tonumber(job[2])
      local token = (as_count(job[5]) or 0) + 1
      redis.call('HSET', key, 's', 'a', 'started_ms', now_text, 'worker', worker,
        'v', int_text(token))
      table.insert(leases, deadline_text)
      table.insert(leases, id)
      if job[6] then release_unique(key, id, 'queued') end
      emit(channel, id, task, queue, 'active', attempts + 1, now)
      table.insert(out, id)
      table.insert(out, token)
      table.insert(out, attempts)
      table.insert(out, task)
      for i = 7, 10 do table.insert(out, job[i] or '') end
      table.insert(out, job[1])
      table.insert(out, job[11] or '')
      table.insert(granted, {id, tostring(token)})
    end
    remaining = remaining - 1
  end
  zadd_all(KEYS[5], leases)
end
if request ~= '' and #granted > 0 then
  redis.call('SET', KEYS[9] .. request, cjson.encode(granted), 'PX', lease_ms)
end

-- More work left: re-arm the marker so another idle worker wakes.
if redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('LLEN', KEYS[3]) > 0 then
  redis.call('ZADD', KEYS[6], '0', 'w')
end

local s = redis.call('ZRANGE', KEYS[4], '0', '0', 'WITHSCORES')
if s[2] then out[1] = math.max(0, tonumber(s[2]) - now) end
local f = redis.call('ZRANGE', KEYS[5], '0', '0', 'WITHSCORES')
if f[2] then out[2] = math.max(0, tonumber(f[2]) - now) end
return out
