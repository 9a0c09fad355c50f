-- wf_cancel: cancel a running workflow as a whole.
-- Nodes not yet enqueued become cancelled here; nodes already enqueued (state ready) are
-- returned so the caller cancels their jobs in their own queues (a running job is asked to
-- stop). Their outcomes still reach the workflow through the advance, which enqueues nothing
-- more once the workflow is not running.
-- KEYS[1]     meta hash
-- KEYS[2]     links hash
-- KEYS[3]     state hash
-- KEYS[4]     done list that result waiters block on
-- KEYS[5..]   the workflow's other keys (calls, wait, results): they expire with it
-- ARGV[1]     workflow events channel
-- ARGV[2]     workflow id
-- ARGV[3]     retention of the cancelled workflow, s
-- Returns     {outcome, then per enqueued node: node, queue}; outcome 'cancelled', 'missing',
--             or the final status it already had
local wstatus = redis.call('HGET', KEYS[1], 'status')
if not wstatus then return {'missing'} end
if wstatus ~= 'running' then return {wstatus} end
local now = now_ms()
local out = {'cancelled'}
local st = redis.call('HGETALL', KEYS[3])
for i = 1, #st, 2 do
  if st[i + 1] == 'pending' then
    redis.call('HSET', KEYS[3], st[i], 'cancelled')
  elseif st[i + 1] == 'ready' then
    table.insert(out, st[i])
    table.insert(out, cjson.decode(redis.call('HGET', KEYS[2], st[i]))['q'])
  end
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_ms', now, 'error',
  'Cancelled: the workflow was cancelled')
redis.call('RPUSH', KEYS[4], 'cancelled')
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], tonumber(ARGV[3])) end
wf_emit(ARGV[1], ARGV[2], 'cancelled', '', now)
return out
