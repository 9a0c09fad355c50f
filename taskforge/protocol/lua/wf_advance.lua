-- wf_advance: record members' outcomes in their workflow and make the next nodes ready.
-- Idempotent: a member's outcome is recorded once (its state leaves pending/ready once); a
-- replay records nothing and returns the same ready nodes again, whose deterministic job ids
-- make their enqueue write nothing twice. The member whose success brings a node's wait count
-- to 0 makes it ready, once: a chord callback is enqueued by exactly one advance, no polling.
-- KEYS[1]     meta hash
-- KEYS[2]     links hash
-- KEYS[3]     calls hash
-- KEYS[4]     state hash
-- KEYS[5]     wait hash
-- KEYS[6]     results hash: node -> value JSON (succeeded) or "Type: message" (failed)
-- KEYS[7]     done list that result waiters block on
-- ARGV[1]     workflow events channel
-- ARGV[2]     workflow id
-- ARGV[3]     retention once finished, s (the result TTL)
-- ARGV[4..]   per member, 4 values: node, status (succeeded|dead|cancelled), value JSON, error
-- Returns     per node to enqueue, 3 values: node, call JSON, JSON array of leading arguments
local channel, wid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local wstatus = redis.call('HGET', KEYS[1], 'status')
if not wstatus then return {} end
local now = now_ms()
local out, offered = {}, {}

local function member(n) return 'wf:' .. wid .. ':' .. n end
local function link(n) return cjson.decode(redis.call('HGET', KEYS[2], n)) end

local function finish(status)
  wstatus = status
  redis.call('HSET', KEYS[1], 'status', status, 'finished_ms', now)
  redis.call('RPUSH', KEYS[7], status)
  for i = 1, 7 do redis.call('EXPIRE', KEYS[i], ttl) end
end

-- Nodes still pending will never run: mark them (the rest of a failed chain: 'cancelled';
-- the on_failure callbacks of a workflow that succeeded: 'skipped').
local function settle(as, kind)
  local st = redis.call('HGETALL', KEYS[4])
  local marks = {}
  for i = 1, #st, 2 do
    if st[i + 1] == 'pending' and (not kind or link(st[i])['k'] == kind) then
      table.insert(marks, st[i]); table.insert(marks, as)
    end
    if #marks >= 2000 then redis.call('HSET', KEYS[4], unpack(marks)); marks = {} end
  end
  if #marks > 0 then redis.call('HSET', KEYS[4], unpack(marks)) end
end

local function fail(n, l, status, err)
  redis.call('HSET', KEYS[1], 'failed_node', n, 'failed', member(n), 'failed_status', status,
    'error', err)
  settle('cancelled')
  for _, e in ipairs(l['e'] or {}) do redis.call('HSET', KEYS[4], e, 'ready') end
  finish('failed')
  wf_emit(channel, wid, 'failed', member(n), now, err)
end

local function leading(l)
  local p = l['p']
  if p == '[]' then return p end
  if p == 'err' then
    local of = redis.call('HMGET', KEYS[1], 'failed', 'error')
    return cjson.encode({of[1] or '', of[2] or ''})
  end
  local deps, values = l['d'], {}
  for i = 1, #deps, 1000 do
    local got = redis.call('HMGET', KEYS[6], unpack(deps, i, math.min(i + 999, #deps)))
    for j = 1, #got do values[tostring(deps[i + j - 1])] = got[j] end
  end
  return (string.gsub(p, '@(%d+)@', function(d)
    local v = values[d]
    if not v or v == '' then return 'null' end
    return v
  end))
end

local function offer(c)
  if offered[c] or redis.call('HGET', KEYS[4], c) ~= 'ready' then return end
  offered[c] = true
  table.insert(out, c)
  table.insert(out, redis.call('HGET', KEYS[3], c))
  table.insert(out, leading(link(c)))
end

local function succeed(n, l, value)
  redis.call('HSET', KEYS[6], n, value)
  -- A callback's own callbacks still run after the workflow succeeded; nothing else does.
  if wstatus ~= 'running' and not (wstatus == 'succeeded' and l['k'] == 'callback') then return end
  for _, c in ipairs(l['n'] or {}) do
    if redis.call('HINCRBY', KEYS[5], c, -1) <= 0 and redis.call('HGET', KEYS[4], c) == 'pending' then
      redis.call('HSET', KEYS[4], c, 'ready')
    end
  end
  if l['k'] == 'main' and wstatus == 'running' then
    wf_emit(channel, wid, 'step_succeeded', member(n), now)
    if redis.call('HINCRBY', KEYS[1], 'remaining', -1) <= 0 then
      settle('skipped', 'errback')
      finish('succeeded')
      wf_emit(channel, wid, 'succeeded', '', now)
    end
  end
end

for a = 4, #ARGV, 4 do
  local n, status = ARGV[a], ARGV[a + 1]
  local st = redis.call('HGET', KEYS[4], n)
  if st then
    local l = link(n)
    if st == 'pending' or st == 'ready' then -- the first outcome of this node; else a replay
      redis.call('HSET', KEYS[4], n, status)
      if status == 'succeeded' then
        succeed(n, l, ARGV[a + 2])
      else
        redis.call('HSET', KEYS[6], n, ARGV[a + 3])
        if wstatus == 'running' and l['k'] == 'main' then fail(n, l, status, ARGV[a + 3]) end
      end
    end
    for _, c in ipairs(l['n'] or {}) do offer(c) end
    for _, e in ipairs(l['e'] or {}) do offer(e) end
  end
end
return out
