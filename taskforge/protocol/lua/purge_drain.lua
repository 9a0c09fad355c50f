-- purge_drain: delete up to a batch of purged jobs (their records, waiter lists and uniqueness
-- locks), from the graveyards purge_queue.lua left; forget a token once its graveyards are empty.
-- KEYS[1]     set of purge tokens still draining
-- KEYS[2]     graveyard key prefix
-- KEYS[3]     job key prefix
-- ARGV[1]     most records to delete in this call
-- Returns     {deleted in this call, ids still waiting in graveyards}
local budget = tonumber(ARGV[1])
local deleted = 0
local waiting = 0
local function bury(ids)
  for _, id in ipairs(ids) do
    local key = KEYS[3] .. id
    release_unique(key, id, 'any')
    redis.call('DEL', key, done_key(key))
  end
  deleted = deleted + #ids
  budget = budget - #ids
end
for _, token in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local left = 0
  for i = 1, 4 do
    local g = KEYS[2] .. token .. ':' .. i
    if budget > 0 and i < 4 then
      local ids = redis.call('LPOP', g, budget)
      if ids then bury(ids) end
    elseif budget > 0 then
      local raw = redis.call('ZPOPMIN', g, budget)
      local ids = {}
      for j = 1, #raw, 2 do ids[#ids + 1] = raw[j] end
      bury(ids)
    end
    if i < 4 then left = left + redis.call('LLEN', g) else left = left + redis.call('ZCARD', g) end
  end
  if left == 0 then redis.call('SREM', KEYS[1], token) end
  waiting = waiting + left
end
return {deleted, waiting}
