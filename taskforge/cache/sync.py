"""The cache service for blocking code: performs the requests of :mod:`taskforge.cache.ops`."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis

from taskforge.cache.core import SCAN_COUNT, TTL, CacheCore, CacheShell, CacheStats
from taskforge.cache.ops import CacheOps, Fetch, Flights, Op, Pause, Request
from taskforge.driver.connection import SyncRedis, sync_client
from taskforge.driver.requests import Batch, Command
from taskforge.settings import Settings

if TYPE_CHECKING:  # annotations only: the asyncio service imports this one, for its .sync twin
    from taskforge.cache.aio import CacheService

__all__ = ["SyncCacheService"]

T = TypeVar("T")


class SyncCacheService(CacheShell, kind="sync"):
    """The cache service for blocking code: the same methods as :class:`CacheService`.

    Build it like :class:`CacheService` (same options), or take ``CacheService(...).sync`` to
    share options and counters with an async service.
    """

    def __init__(self, settings: Settings | None = None, **options: Any):
        self._attach(CacheCore(settings, **options))

    def _attach(self, core: CacheCore) -> None:
        super()._attach(core)
        self._ops = CacheOps(core)
        self._client: SyncRedis | None = None
        self._client_lock = threading.Lock()
        self._flights: Flights[threading.Event] = Flights(threading.Event)

    @property
    def settings(self) -> Settings:
        """The connection settings."""
        return self._core.settings

    @property
    def stats(self) -> CacheStats:
        """Hit/miss counters (shared with the async twin, if any)."""
        return self._core.stats

    @property
    def aio(self) -> CacheService:
        """The asyncio twin: same options, same counters."""
        return cast("CacheService", self._twin("aio"))

    def key(self, key: str, tenant_id: str | int | None = None) -> str:
        """The Redis key used for ``key``."""
        return self._core.key(key, tenant_id)

    @property
    def client(self) -> SyncRedis:
        """The blocking Redis client (created on first use)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = sync_client(self._core.settings)
        return self._client

    def set(
        self,
        key: str,
        value: Any,
        ttl: TTL | None = None,
        tenant_id: str | int | None = None,
        *,
        cache_type: str | None = None,
    ) -> bool:
        """See :meth:`CacheService.set`."""
        return self._run(self._ops.set(key, value, ttl, tenant_id, cache_type))

    def get(
        self,
        key: str,
        tenant_id: str | int | None = None,
        *,
        default: Any = None,
        cache_type: str | None = None,
    ) -> Any:
        """See :meth:`CacheService.get`."""
        return self._run(self._ops.get(key, tenant_id, default, cache_type))

    def get_or_fetch(
        self,
        key: str,
        fetch_func: Callable[[], Any],
        ttl: TTL | None = None,
        tenant_id: str | int | None = None,
        *,
        cache_type: str | None = None,
        stale_ttl: TTL | None = None,
    ) -> Any:
        """See :meth:`CacheService.get_or_fetch`; ``fetch_func`` must be a plain function here."""
        op = self._ops.get_or_fetch(self._flights, key, ttl, tenant_id, cache_type, stale_ttl)
        return self._run(op, fetch_func)

    def invalidate(self, key: str, tenant_id: str | int | None = None) -> bool:
        """See :meth:`CacheService.invalidate`."""
        full_key = self._core.key(key, tenant_id)
        try:
            return bool(self.client.unlink(full_key))
        except redis.RedisError as exc:
            raise self._core.invalidation_error(exc) from exc

    def invalidate_pattern(
        self, pattern: str, tenant_id: str | int | None = None, *, all_tenants: bool = False
    ) -> int:
        """See :meth:`CacheService.invalidate_pattern` (SCAN + UNLINK in batches)."""
        match = self._core.pattern(pattern, tenant_id, all_tenants)
        skip_tenants = tenant_id is None and not all_tenants
        removed = 0
        batch: list[str] = []
        try:
            for key in self.client.scan_iter(match=match, count=SCAN_COUNT):
                if not (skip_tenants and self._core.is_tenant_key(key)):
                    batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
            return removed
        except redis.RedisError as exc:
            raise self._core.invalidation_error(exc) from exc

    def ttl(self, key: str, tenant_id: str | int | None = None) -> float | None:
        """See :meth:`CacheService.ttl`."""
        return self._run(self._ops.ttl(key, tenant_id))

    def health(self) -> bool:
        """True if Redis answers a PING (never raises)."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        """Release the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self, op: Op[T], fetch_func: Callable[[], Any] | None = None) -> T:
        """Drive ``op``: perform each request, send its reply (or throw its error) back."""
        try:
            request = next(op)
            while True:
                try:
                    reply = self._perform(request, fetch_func)
                except BaseException as exc:
                    request = op.throw(exc)
                else:
                    request = op.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _perform(self, request: Request, fetch_func: Callable[[], Any] | None) -> Any:
        if isinstance(request, Command):
            return self.client.execute_command(*request.args)  # type: ignore[no-untyped-call,unused-ignore]
        if isinstance(request, Batch):
            pipe = self.client.pipeline(transaction=False)
            for command in request.commands:
                pipe.execute_command(*command.args)  # type: ignore[no-untyped-call,unused-ignore]
            return pipe.execute()
        if isinstance(request, Fetch):
            assert fetch_func is not None
            return _call(fetch_func)
        if isinstance(request, Pause):
            return time.sleep(request.seconds)
        return request.done.wait()


def _call(fetch_func: Callable[[], Any]) -> Any:
    value = fetch_func()
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError("SyncCacheService needs a plain fetch_func; use CacheService for async")
    return value
