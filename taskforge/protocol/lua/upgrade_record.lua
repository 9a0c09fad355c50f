-- upgrade_record: move one job record of the previous layout (key word 'job', an 'envelope'
-- field, status words) to the compact one, in one step; the caller (taskforge.upgrade) read
-- the old record and computed the new fields. Nothing else names the record's key: ready lists,
-- sets, unique locks and waiter lists hold the id, which stays.
-- KEYS[1]     the old record ('<base>:job:<id>')
-- KEYS[2]     the new record ('<base>:j:<id>')
-- ARGV[1]     the old record's status as the caller read it (the move is refused if it changed)
-- ARGV[2..]   the new record's fields, as field, value pairs
-- Returns     1 moved, 2 already moved (the old key is deleted if both exist: the new one wins),
--             3 recovered: a new worker started before the upgrade buried the id (no record in
--             its layout) and left a stub without a task; the old record's fields fill the
--             stub, which stays dead with its reason, so `taskforge dead requeue` can run it,
--             0 refused (the old record changed since it was read: read it again), -1 gone
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('HEXISTS', KEYS[2], 't') == 1 or redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1])
    return 2
  end
  for i = 2, #ARGV, 2 do
    -- The stub's status and its error say why it is dead: kept; the call's fields come over.
    if ARGV[i] ~= 's' and redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
  end
  redis.call('DEL', KEYS[1])
  return 3
end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if (redis.call('HGET', KEYS[1], 'status') or '') ~= ARGV[1] then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
redis.call('DEL', KEYS[1])
return 1
