-- limit_rate: count one job start against its task's rate limit (fixed windows, server time).
-- KEYS[1]     counter key prefix of the task (counter = prefix .. window index; one hash tag)
-- ARGV[1]     most starts per window
-- ARGV[2]     window length, ms
-- Returns     0 when the job may start now, else ms until the window where it may try again:
--             a job that is the n-th over the limit waits n/limit windows more, so a backlog
--             spreads over later windows instead of retrying all at once
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local index = math.floor(now / window)
local key = KEYS[1] .. index
local count = redis.call('INCR', key)
if count == 1 then redis.call('PEXPIRE', key, window * 2) end
if count <= limit then return 0 end
local ahead = math.floor((count - limit - 1) / limit)
return (index + 1 + ahead) * window - now
