-- cache_unlock: release a cache fill lock, only if this caller still holds it.
--
-- KEYS[1]  the fill lock key (cache.lock:...)
-- ARGV[1]  the token the caller set the lock with
--
-- Returns 1 when released, 0 when the lock expired or belongs to another caller (a late
-- release must not free a lock someone else holds now).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
