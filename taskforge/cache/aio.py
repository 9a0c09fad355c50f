"""The cache service over asyncio: performs the requests of :mod:`taskforge.cache.ops`."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anyio
import redis

from taskforge.cache.core import SCAN_COUNT, TTL, CacheCore, CacheShell, CacheStats, Serializer
from taskforge.cache.ops import CacheOps, Fetch, Flights, Op, Pause, Request
from taskforge.cache.sync import SyncCacheService
from taskforge.driver.connection import AsyncRedis, async_client
from taskforge.driver.requests import Batch, Command
from taskforge.settings import Settings

__all__ = ["CacheService"]

T = TypeVar("T")


@dataclass
class _LoopState:
    client: AsyncRedis
    flights: Flights[anyio.Event] = field(default_factory=lambda: Flights(anyio.Event))


class CacheService(CacheShell, kind="aio"):
    """The guide's cache service over asyncio (``await cache.get(...)``).

    Creating it connects to nothing; each event loop gets its own client on first use. Options:
    ``namespace`` (key root, default ``"cache"``), ``serializer`` (``"json"``, or ``"pickle"``
    for trusted data only), ``default_ttl`` (for keys of no known cache type), ``ttls`` (override
    :data:`CACHE_TTLS`), ``ttl_jitter`` (fraction a TTL may be shortened by), ``stale_ttl``
    (serve a value this long past its TTL while one caller refreshes it), ``lock_timeout_s``
    (how long a fill lock lasts), ``outage_retry_s`` (how long to skip Redis after it failed to
    answer). ``sync`` is a blocking twin sharing the options and counters.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        namespace: str = "cache",
        serializer: Serializer = "json",
        default_ttl: TTL = 3600,
        ttls: Mapping[str, TTL] | None = None,
        ttl_jitter: float = 0.1,
        stale_ttl: TTL | None = None,
        lock_timeout_s: float = 10.0,
        outage_retry_s: float = 1.0,
    ):
        core = CacheCore(
            settings,
            namespace=namespace,
            serializer=serializer,
            default_ttl=default_ttl,
            ttls=ttls,
            ttl_jitter=ttl_jitter,
            stale_ttl=stale_ttl,
            lock_timeout_s=lock_timeout_s,
            outage_retry_s=outage_retry_s,
        )
        self._attach(core)

    def _attach(self, core: CacheCore) -> None:
        super()._attach(core)
        self._ops = CacheOps(core)
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def settings(self) -> Settings:
        """The connection settings."""
        return self._core.settings

    @property
    def stats(self) -> CacheStats:
        """Hit/miss counters of this service (shared with :attr:`sync`)."""
        return self._core.stats

    @property
    def sync(self) -> SyncCacheService:
        """The blocking twin: same options, same counters, its own connection pool."""
        return cast(SyncCacheService, self._twin("sync"))

    def key(self, key: str, tenant_id: str | int | None = None) -> str:
        """The Redis key of ``key``: ``cache:tenant:{tenant_id}:{key}`` or ``cache:{key}``."""
        return self._core.key(key, tenant_id)

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            state = self._loops[loop] = _LoopState(async_client(self._core.settings))
        return state

    async def set(
        self,
        key: str,
        value: Any,
        ttl: TTL | None = None,
        tenant_id: str | int | None = None,
        *,
        cache_type: str | None = None,
    ) -> bool:
        """Cache ``value`` under ``key`` for ``ttl`` seconds (default: its cache type's TTL).

        Returns False when Redis could not be written (the cache degrades, it does not raise).

        Raises:
            SerializationError: the value cannot be encoded.
        """
        return await self._run(self._ops.set(key, value, ttl, tenant_id, cache_type))

    async def get(
        self,
        key: str,
        tenant_id: str | int | None = None,
        *,
        default: Any = None,
        cache_type: str | None = None,
    ) -> Any:
        """The cached value, or ``default`` on a miss (or while Redis is unreachable)."""
        return await self._run(self._ops.get(key, tenant_id, default, cache_type))

    async def get_or_fetch(
        self,
        key: str,
        fetch_func: Callable[[], Any],
        ttl: TTL | None = None,
        tenant_id: str | int | None = None,
        *,
        cache_type: str | None = None,
        stale_ttl: TTL | None = None,
    ) -> Any:
        """The cached value, or ``fetch_func()``'s (awaited if it returns an awaitable), cached.

        Concurrent misses on one key call ``fetch_func`` once across all processes. With a
        stale window (``stale_ttl`` here or on the service), an expired value keeps being served
        while one caller refreshes it. Redis failures never reach the caller: the source is
        called instead. Exceptions of ``fetch_func`` propagate (to every caller sharing it).
        """
        flights = self._state().flights
        op = self._ops.get_or_fetch(flights, key, ttl, tenant_id, cache_type, stale_ttl)
        return await self._run(op, fetch_func)

    async def invalidate(self, key: str, tenant_id: str | int | None = None) -> bool:
        """Delete one cached value; True if it existed.

        Raises:
            BrokerError: Redis could not be reached (an invalidation is never silently lost).
        """
        full_key = self._core.key(key, tenant_id)
        try:
            removed = await self._state().client.unlink(full_key)
        except redis.RedisError as exc:
            raise self._core.invalidation_error(exc) from exc
        return bool(removed)

    async def invalidate_pattern(
        self, pattern: str, tenant_id: str | int | None = None, *, all_tenants: bool = False
    ) -> int:
        """Delete every cached key matching a glob ``pattern`` (``"workflow:*"``); the count.

        Walks the keyspace with ``SCAN`` and deletes each batch with ``UNLINK`` (never
        ``KEYS``), so Redis keeps serving other clients meanwhile. Without ``tenant_id`` the
        pattern covers global keys only; ``all_tenants=True`` covers every tenant's.

        Raises:
            BrokerError: Redis could not be reached.
        """
        client = self._state().client
        match = self._core.pattern(pattern, tenant_id, all_tenants)
        skip_tenants = tenant_id is None and not all_tenants
        removed = 0
        batch: list[str] = []
        try:
            async for key in client.scan_iter(match=match, count=SCAN_COUNT):
                if not (skip_tenants and self._core.is_tenant_key(key)):
                    batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    removed += await client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await client.unlink(*batch)
            return removed
        except redis.RedisError as exc:
            raise self._core.invalidation_error(exc) from exc

    async def ttl(self, key: str, tenant_id: str | int | None = None) -> float | None:
        """Seconds until a cached value expires (stale window included); None if absent, or
        while Redis is unreachable."""
        return await self._run(self._ops.ttl(key, tenant_id))

    async def health(self) -> bool:
        """True if Redis answers a PING (never raises)."""
        try:
            return bool(await self._state().client.ping())
        except redis.RedisError:
            return False

    async def aclose(self) -> None:
        """Close the current event loop's connection pool."""
        state = self._loops.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.client.aclose()

    async def _run(self, op: Op[T], fetch_func: Callable[[], Any] | None = None) -> T:
        """Drive ``op``: perform each request, send its reply (or throw its error) back."""
        try:
            request = next(op)
            while True:
                try:
                    reply = await self._perform(request, fetch_func)
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _perform(self, request: Request, fetch_func: Callable[[], Any] | None) -> Any:
        if isinstance(request, Command):
            return await self._state().client.execute_command(*request.args)
        if isinstance(request, Batch):
            pipe = self._state().client.pipeline(transaction=False)
            for command in request.commands:
                pipe.execute_command(*command.args)
            return await pipe.execute()
        if isinstance(request, Fetch):
            assert fetch_func is not None
            value = fetch_func()
            return (await value) if inspect.isawaitable(value) else value
        if isinstance(request, Pause):
            return await anyio.sleep(request.seconds)
        return await request.done.wait()
