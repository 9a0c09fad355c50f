"""The integration guide's cache service: tenant-aware keys, TTLs per cache type, ``@cached``.

Keys follow the guide's namespace: ``cache:tenant:{tenant_id}:{cache_type}:{identifier}`` for a
tenant, ``cache:{cache_type}:{identifier}`` otherwise. The ``key`` given to every method is the
``{cache_type}:{identifier}`` part (``"workflow_def:abc-456"``); its first segment picks the
default TTL from :data:`CACHE_TTLS` when no ``ttl`` is given.

Misses are stampede-protected: concurrent misses on one key, in one process or many, call the
source once. In a process, callers of the same key share one call; across processes, the first
caller takes a short Redis lock (``cache.lock:...``) and the others poll for the value it writes.
TTLs get a little jitter (never longer than asked), and an optional stale window serves the old
value while one caller refreshes it.

The cache degrades rather than fails: when Redis is unreachable, ``get`` misses, ``set`` does
nothing and ``get_or_fetch`` calls the source, with one warning per outage. Invalidation is the
exception: it raises :class:`~taskforge.errors.BrokerError`, because a lost invalidation would
serve stale data once Redis is back.

Each cache operation is written once as a generator of requests (as in
:mod:`taskforge.driver.requests`), driven by :class:`CacheService` (asyncio) and
:class:`SyncCacheService` (blocking). The rooms:

- ``core``: options, keys, TTLs, encoding, counters, Redis's health (no I/O);
- ``ops``: the operations as request generators, single flight and degradation (no I/O);
- ``aio`` / ``sync``: the two services, each only performing the requests;
- ``defaults``: the process-wide service; ``decorators``: ``@cached``.
"""

from taskforge.cache.aio import CacheService
from taskforge.cache.core import CACHE_TTLS, TTL, CacheStats, Serializer
from taskforge.cache.decorators import AsyncCachedFunction, CachedFunction, cached
from taskforge.cache.defaults import (
    configure_cache,
    default_cache_service,
    get_cache_service,
    get_sync_cache_service,
)
from taskforge.cache.ops import UNLOCK_SCRIPT, Fetch, Op, Pause, Request
from taskforge.cache.sync import SyncCacheService
from taskforge.driver.connection import AsyncRedis, SyncRedis

__all__ = [
    "CACHE_TTLS",
    "TTL",
    "UNLOCK_SCRIPT",
    "AsyncCachedFunction",
    "AsyncRedis",
    "CacheService",
    "CacheStats",
    "CachedFunction",
    "Fetch",
    "Op",
    "Pause",
    "Request",
    "Serializer",
    "SyncCacheService",
    "SyncRedis",
    "cached",
    "configure_cache",
    "default_cache_service",
    "get_cache_service",
    "get_sync_cache_service",
]
