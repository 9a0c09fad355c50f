-- Shared helpers. The broker prepends this file to every script before loading it, so each
-- script below can call them; nothing here touches a key.

-- Server time in ms: leases, schedules and timestamps never depend on a worker's clock.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Publish one status transition (the job:updates contract: job_id, task, queue, status,
-- attempt, timestamp in epoch seconds, error when failed).
local function emit(channel, job_id, task, queue, status, attempt, now, err)
  if channel == '' then return end
  local ev = {job_id = job_id, task = task or '', queue = queue, status = status,
              attempt = tonumber(attempt) or 0, timestamp = now / 1000}
  if err and err ~= '' then ev['error'] = err end
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

-- Wake the result waiters of a job whose record has the flag watch.lua sets.
local function wake_waiters(job_key, status, ttl_s)
  local done = job_key .. ':done'
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

