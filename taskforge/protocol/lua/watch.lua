-- watch: register a result waiter on a job and read its status, atomically, so a job that
-- finishes right after this call still wakes the waiter (finish.lua checks the flag).
-- KEYS[1]     job record
-- Returns     the job's status, or nil when there is no record
local st = redis.call('HGET', KEYS[1], 's')
if not st then return nil end
redis.call('HSET', KEYS[1], 'waiters', '1')
return WORD[st] or 'dead'
