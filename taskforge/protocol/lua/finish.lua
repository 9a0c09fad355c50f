-- finish: record final outcomes of leased jobs (succeeded, dead or cancelled), batched.
-- Fenced: an outcome whose lease token is not the job's current one is refused, so a worker
-- whose job was reclaimed cannot overwrite the new run; a repeated finish is a no-op.
-- Per job it costs one HMGET, one HSET, one EXPIRE and the event; the inflight entries leave
-- with one ZREM per call.
-- KEYS[1]     inflight zset
-- KEYS[2]     dead zset
-- KEYS[3]     job key prefix
-- KEYS[4]     workflow outbox zset (a member's outcome queues its workflow's advance here)
-- ARGV[1]     events channel
-- ARGV[2]     queue name
-- ARGV[3]     retention of succeeded/cancelled records, s (dead records are kept)
-- ARGV[4..]   per job, 8 values: id, lease token, status ('succeeded'|'dead'|'cancelled'),
--             result json ('' = none), error type, error message, traceback, run duration ms
--             (the worker's measure; the event carries it with the worker id)
-- Returns     per job: 1 recorded, 2 already recorded (this lease's finish wrote this status
--             before: a re-send after a lost reply; nothing changes), 0 refused (stale token,
--             or not active)
local channel, queue, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
-- Numbers go to redis.call as text: Redis formats a Lua number argument with '%.17g', which
-- costs thousands of instructions for a 13-digit time ('%d' of a whole number below 2^53 is
-- the same text).
local now_text = string.format('%d', now)
local out = {}
local done = {}
-- The letters of the three final statuses (the prelude's table has all seven).
local FINAL_LETTER = {succeeded = 'd', dead = 'x', cancelled = 'c'}
for a = 4, #ARGV, 8 do
  local id, token, status = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local key = KEYS[3] .. id
  local rec = redis.call('HMGET', key, 'v', 's', 't', 'n', 'waiters',
    'unique_lock', 'finished_by', 'worker')
  local letter = FINAL_LETTER[status]
  if rec[7] == token and rec[2] == letter then
    table.insert(out, 2)
  elseif rec[1] ~= token or rec[2] ~= 'a' then
    table.insert(out, 0)
  else
    -- as_count, not tonumber: a count damaged to 'nan'/'inf' while the job ran would make the
    -- event's encoder raise after the record was written, failing the whole batch each time.
    local attempt = (as_count(rec[4]) or 0) + 1
    local err = ARGV[a + 5]
    local fields = {'s', letter, 'finished_ms', now_text, 'n', attempt,
      'finished_by', token}
    if ARGV[a + 3] ~= '' then
      table.insert(fields, 'result')
      table.insert(fields, ARGV[a + 3])
    end
    if err ~= '' then
      for _, v in ipairs({'error_type', ARGV[a + 4], 'error', err, 'traceback', ARGV[a + 6]}) do
        table.insert(fields, v)
      end
    end
    redis.call('HSET', key, unpack(fields))
    table.insert(done, id)
    if status == 'dead' then
      redis.call('ZADD', KEYS[2], now_text, id)
      if rec[6] then release_unique(key, id, 'any') end
    else
      redis.call('EXPIRE', key, ttl)
      if rec[6] then release_unique(key, id, status == 'succeeded' and 'running' or 'any') end
    end
    if rec[5] == '1' then wake_waiters(key, status, ttl) end
    local shown = ''
    if err ~= '' then shown = ARGV[a + 4] .. ': ' .. err end
    local extra = {duration_ms = tonumber(ARGV[a + 7]), worker = rec[8] or ''}
    emit(channel, id, rec[3], queue, status, attempt, now, shown, extra)
    -- In the same script as the outcome: a worker killed before the advance loses nothing.
    if KEYS[4] and string.sub(id, 1, 3) == 'wf:' then redis.call('ZADD', KEYS[4], now_text, id) end
    table.insert(out, 1)
  end
end
zrem_all(KEYS[1], done)
return out
