-- wf_outbox: outbox entries older than a lease (their worker died before the advance), with
-- what the advance needs from each member's record. Entries whose record is gone or no longer
-- final (revived from the dead letters) are dropped: a new outcome writes a new entry.
-- KEYS[1]     outbox zset of the queue: member job id -> when its outcome was written (ms)
-- KEYS[2]     job key prefix
-- ARGV[1]     minimum age, ms
-- ARGV[2]     most entries to return
-- Returns     per entry 4 values: job id, status, result JSON, "Type: message" ('' if none)
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0,
  tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local rec, why = read_record(KEYS[2] .. id, 's', 'result', 'error_type', 'error')
  -- A record of another type was buried as poison by fetch.lua: its member is dead.
  if not rec then rec = {'x', nil, 'PoisonJob', 'poison: ' .. why} end
  rec[1] = WORD[rec[1]]
  if rec[1] == 'succeeded' or rec[1] == 'dead' or rec[1] == 'cancelled' then
    local err = ''
    if rec[3] then err = rec[3] .. ': ' .. (rec[4] or '') end
    for _, v in ipairs({id, rec[1], rec[2] or '', err}) do table.insert(out, v) end
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
