"""``@cached``: a function's results in the cache, keyed by its arguments (async or sync)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Coroutine
from types import MethodType
from typing import Any, Generic, ParamSpec, TypeVar, overload

from taskforge.cache.aio import CacheService
from taskforge.cache.core import TTL
from taskforge.cache.defaults import default_cache_service
from taskforge.cache.sync import SyncCacheService
from taskforge.errors import SerializationError

__all__ = ["AsyncCachedFunction", "CachedFunction", "cached"]

P = ParamSpec("P")
R = TypeVar("R")


class _KeyMaker:
    """Turns a call's arguments into a stable cache key (``{key_prefix}:{digest}``)."""

    def __init__(self, fn: Callable[..., Any], key_prefix: str | None):
        self.signature = inspect.signature(fn)
        self.prefix = key_prefix or f"{fn.__module__}.{fn.__qualname__}"
        params = list(self.signature.parameters)
        self.skip_first = bool(params) and params[0] in ("self", "cls")
        self.name = fn.__qualname__

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        tenant_id = arguments.pop("tenant_id", None)
        if self.skip_first:
            arguments.pop(next(iter(self.signature.parameters)))
        try:
            canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"@cached {self.name}: arguments must be JSON data to make a stable key ({exc})"
            ) from exc
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        return f"{self.prefix}:{digest}", tenant_id


class CachedFunction(Generic[P, R]):
    """A plain function wrapped by :func:`cached`; ``invalidate(*args, **kwargs)`` drops one
    call's cached result."""

    def __init__(
        self,
        fn: Callable[P, R],
        ttl: TTL | None,
        key_prefix: str | None,
        cache: CacheService | None,
    ):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._ttl = ttl
        self._keys = _KeyMaker(fn, key_prefix)
        self._cache = cache

    def _service(self) -> SyncCacheService:
        return (self._cache or default_cache_service()).sync

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function does (``self`` is left out of the key).
        return self if instance is None else MethodType(self, instance)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key, tenant_id = self._keys(args, kwargs)
        value: R = self._service().get_or_fetch(
            key, lambda: self._fn(*args, **kwargs), self._ttl, tenant_id
        )
        return value

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result of this call (same arguments, same ``tenant_id``)."""
        key, tenant_id = self._keys(args, kwargs)
        return self._service().invalidate(key, tenant_id)


class AsyncCachedFunction(Generic[P, R]):
    """An async function wrapped by :func:`cached`; ``await invalidate(*args, **kwargs)``."""

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        ttl: TTL | None,
        key_prefix: str | None,
        cache: CacheService | None,
    ):
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._ttl = ttl
        self._keys = _KeyMaker(fn, key_prefix)
        self._cache = cache

    def _service(self) -> CacheService:
        return self._cache or default_cache_service()

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function does (``self`` is left out of the key).
        return self if instance is None else MethodType(self, instance)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key, tenant_id = self._keys(args, kwargs)
        value: R = await self._service().get_or_fetch(
            key, lambda: self._fn(*args, **kwargs), self._ttl, tenant_id
        )
        return value

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the cached result of this call (same arguments, same ``tenant_id``)."""
        key, tenant_id = self._keys(args, kwargs)
        return await self._service().invalidate(key, tenant_id)


class _CachedDecorator:
    """Type of ``@cached(...)``: applied to a function, gives its cached wrapper."""

    def __init__(self, ttl: TTL | None, key_prefix: str | None, cache: CacheService | None):
        self.ttl = ttl
        self.key_prefix = key_prefix
        self.cache = cache

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> AsyncCachedFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> CachedFunction[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Any:
        if inspect.iscoroutinefunction(fn):
            return AsyncCachedFunction(fn, self.ttl, self.key_prefix, self.cache)
        return CachedFunction(fn, self.ttl, self.key_prefix, self.cache)


def cached(
    ttl: TTL | None = None,
    key_prefix: str | None = None,
    *,
    cache: CacheService | None = None,
) -> _CachedDecorator:
    """Cache a function's results (async or sync): ``@cached(ttl=3600, key_prefix="workflow")``.

    The key is ``{key_prefix}:{digest of the arguments}`` (``key_prefix`` defaults to the
    function's qualified name; a leading ``self``/``cls`` is left out); a ``tenant_id`` argument
    puts it in that tenant's namespace (and is still passed to the function). Arguments must be
    JSON data. Without ``ttl``, a ``key_prefix`` naming a cache type (``"workflow_def"``) uses
    that type's TTL. ``cache`` defaults to the process-wide service, resolved at call time.
    ``fn.invalidate(*args, **kwargs)`` drops one call's cached result.
    """
    return _CachedDecorator(ttl, key_prefix, cache)
