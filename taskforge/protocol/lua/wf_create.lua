-- wf_create: write a workflow's structure once, under its own hash tag.
-- KEYS[1]     meta hash (status, tree, output template, remaining main members, ...)
-- KEYS[2]     links hash: node -> JSON {k kind, q queue, n next nodes, e errbacks, d deps, p prefix}
-- KEYS[3]     calls hash: node -> JSON of the call (task, args, kwargs, options)
-- KEYS[4]     state hash: node -> pending | ready | succeeded | dead | cancelled | skipped
--             (skipped: an on_failure callback of a workflow that succeeded)
-- KEYS[5]     wait hash: node -> dependencies not yet succeeded
-- ARGV[1]     workflow events channel
-- ARGV[2]     workflow id
-- ARGV[3]     tree JSON (for display)
-- ARGV[4]     output template (JSON over @node@ values)
-- ARGV[5]     main members (whose success the workflow's success needs)
-- ARGV[6..]   per node, 4 values: links JSON, call JSON, initial state, dependency count
-- Returns     {'new'} or, when the id exists (a repeated delay), {'existing', nodes still ready}:
--             the caller enqueues those again; their ids are deterministic, so only the ones
--             that never reached their queue are written.
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  local out = {'existing'}
  local st = redis.call('HGETALL', KEYS[4])
  for i = 1, #st, 2 do
    if st[i + 1] == 'ready' then table.insert(out, st[i]) end
  end
  return out
end
redis.call('HSET', KEYS[1], 'status', 'running', 'created_ms', now, 'tree', ARGV[3],
  'output', ARGV[4], 'remaining', ARGV[5], 'size', (#ARGV - 5) / 4)
local links, calls, states, waits = {}, {}, {}, {}
local function flush()
  if #links > 0 then
    redis.call('HSET', KEYS[2], unpack(links))
    redis.call('HSET', KEYS[3], unpack(calls))
    redis.call('HSET', KEYS[4], unpack(states))
  end
  if #waits > 0 then redis.call('HSET', KEYS[5], unpack(waits)) end
  links, calls, states, waits = {}, {}, {}, {}
end
for a = 6, #ARGV, 4 do
  local n = (a - 6) / 4
  table.insert(links, n); table.insert(links, ARGV[a])
  table.insert(calls, n); table.insert(calls, ARGV[a + 1])
  table.insert(states, n); table.insert(states, ARGV[a + 2])
  if ARGV[a + 3] ~= '0' then table.insert(waits, n); table.insert(waits, ARGV[a + 3]) end
  if #links >= 2000 then flush() end
end
flush()
wf_emit(ARGV[1], ARGV[2], 'started', '', now)
return {'new'}
