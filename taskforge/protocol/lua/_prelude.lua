-- Shared helpers; nothing here touches a key. Each script is loaded with the helpers it calls
-- (directly or through another helper) prepended, in this file's order: a helper may use only
-- the ones above it (taskforge/protocol/scripts.py splits this file at each top-level 'local').

-- A job record's status is one letter in Redis (taskforge.protocol.records.STATUS_LETTER has
-- the same table); events, replies and the result waiters' lists carry the words.
local LETTER = {queued = 'q', scheduled = 's', active = 'a', retrying = 'r', succeeded = 'd',
  dead = 'x', cancelled = 'c'}
local WORD = {q = 'queued', s = 'scheduled', a = 'active', r = 'retrying', d = 'succeeded',
  x = 'dead', c = 'cancelled'}

-- Server time in ms: leases, schedules and timestamps never depend on a worker's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Publish one status transition (the job:updates contract: job_id, task, queue, status,
-- attempt, timestamp in epoch seconds, error when failed; `extra`, a table or nil, adds fields
-- such as the run's duration_ms, the worker id and a retry's run_at).
local function emit(channel, job_id, task, queue, status, attempt, now, err, extra)
  if channel == '' then return end
  local ev = {job_id = job_id, task = task or '', queue = queue, status = status,
              attempt = tonumber(attempt) or 0, timestamp = now / 1000}
  if err and err ~= '' then ev['error'] = err end
  if extra then
    for k, v in pairs(extra) do ev[k] = v end
  end
  -- Workflow members (ids 'wf:<workflow>:<node>') name their workflow in every event.
  if string.sub(job_id, 1, 3) == 'wf:' then ev['workflow_id'] = string.match(job_id, '^wf:(.+):%d+$') end
  redis.call('PUBLISH', channel, cjson.encode(ev))
end

-- Publish one workflow transition (the workflow:events contract: workflow_id, event, member
-- job id when one caused it, timestamp in epoch seconds, error when failed).
local function wf_emit(channel, workflow_id, event, member, now, err)
  local ev = {workflow_id = workflow_id, event = event, timestamp = now / 1000}
  if member ~= '' then ev['member'] = member end
  if err and err ~= '' then ev['error'] = err end
  redis.call('PUBLISH', channel, cjson.encode(ev))
end

-- The result waiters' list of a job (keys.QueueKeys.done): 'base:done:<id>' for the record
-- 'base:j:<id>', where base ends at the hash tag's '}' (prefixes and queue names have no braces).
local function done_key(job_key)
  local close = string.find(job_key, '}', 1, true)
  return string.sub(job_key, 1, close) .. ':done:' .. string.sub(job_key, close + 4)
end

-- Wake the result waiters of a job whose record has the flag watch.lua sets.
local function wake_waiters(job_key, status, ttl_s)
  local done = done_key(job_key)
  redis.call('RPUSH', done, status)
  redis.call('EXPIRE', done, ttl_s)
end

-- Wake result waiters, if any registered.
local function notify(job_key, status, ttl_s)
  if redis.call('HGET', job_key, 'waiters') == '1' then wake_waiters(job_key, status, ttl_s) end
end

-- ZADD (score, member pairs) and ZREM (members) for a whole batch, in chunks small enough for
-- unpack() (Lua's stack holds about 8,000 values).
local function zadd_all(key, pairs_list)
  for i = 1, #pairs_list, 2000 do
    redis.call('ZADD', key, unpack(pairs_list, i, math.min(i + 1999, #pairs_list)))
  end
end

local function zrem_all(key, members)
  for i = 1, #members, 2000 do
    redis.call('ZREM', key, unpack(members, i, math.min(i + 1999, #members)))
  end
end

local PRIORITY_INDEX = {high = 1, normal = 2, low = 3}

-- Drop a job's uniqueness lock when it reaches the stage its policy names
-- ('queued': when it starts; 'running': when it ends; 'ttl' locks only expire).
local function release_unique(job_key, job_id, stage)
  local u = redis.call('HMGET', job_key, 'unique_lock', 'unique_until')
  if u[1] and (u[2] == stage or stage == 'any') and u[2] ~= 'ttl' then
    if redis.call('GET', u[1]) == job_id then redis.call('DEL', u[1]) end
  end
end


-- A count field (attempts, deliveries, lost) as a number, or nil unless it is a whole number
-- >= 0: Lua's tonumber also reads 'inf', 'nan' and hex, which no script ever wrote.
local function as_count(v)
  local n = tonumber(v)
  if n and n >= 0 and n < 2 ^ 53 and math.floor(n) == n then return n end
  return nil
end

local function shown(v)
  return "'" .. string.sub(tostring(v), 1, 40) .. "'"
end

-- Why a job record cannot be moved or run (nil when it can). Scripts check what they read
-- before they write: a damaged record must be buried, not raise half-way through a batch.
local function unreadable(priority, attempts)
  local why = nil
  if not priority then
    why = 'priority is missing'
  elseif not PRIORITY_INDEX[priority] then
    why = 'priority ' .. shown(priority) .. ' is not high, normal or low'
  elseif not attempts then
    why = 'attempts is missing'
  elseif not as_count(attempts) then
    why = 'attempts ' .. shown(attempts) .. ' is not a count'
  end
  if why then return 'unreadable job record: ' .. why end
  return nil
end

-- HMGET that survives a key of another type: the fields, or nil and why.
local function read_record(key, ...)
  local rec = redis.pcall('HMGET', key, ...)
  if type(rec) == 'table' and rec.err then
    return nil, 'unreadable job record: it is a ' .. redis.call('TYPE', key).ok .. ', not a hash'
  end
  return rec
end

-- Read a job's fields: priority ('p'), attempts ('n'), status ('s'), then the ones asked for
-- (from rec[4]): the fields, or nil and why the job cannot be moved or run. An absent 'p' is
-- 'normal' and an absent 'n' is 0 (the record leaves out what equals its default); a missing
-- status tells no record from a record without another call.
local function read_job(key, ...)
  local rec, why = read_record(key, 'p', 'n', 's', ...)
  if rec and not rec[3] then
    if redis.call('EXISTS', key) == 0 then
      -- An id without a record (foreign bytes pushed onto a list, or an evicted record).
      return nil, 'no job record for this id'
    end
    why = 'unreadable job record: status is missing'
  elseif rec then
    rec[1] = rec[1] or 'normal'
    rec[2] = rec[2] or '0'
    why = unreadable(rec[1], rec[2])
  end
  if why then return nil, why end
  return rec
end

-- Dead-letter a job whose record the scripts cannot read, with the reason: seen, never dropped.
-- Its counters are made readable again so status reads and `taskforge dead list` work on it.
local function bury_unreadable(key, id, dead_key, why, channel, queue, now)
  local err = 'poison: ' .. why
  local task = ''
  local kind = redis.call('TYPE', key).ok
  if kind == 'hash' or kind == 'none' then
    local rec = redis.call('HMGET', key, 'n', 'v', 't')
    task = rec[3] or ''
    redis.call('HSET', key, 's', 'x', 'error_type', 'PoisonJob', 'error', err,
      'finished_ms', now, 'n', as_count(rec[1]) or 0, 'v', as_count(rec[2]) or 0)
    release_unique(key, id, 'any')
    notify(key, 'dead', 3600)
  end
  redis.call('ZADD', dead_key, now, id)
  emit(channel, id, task, queue, 'dead', 0, now, err)
end
