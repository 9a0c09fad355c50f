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

Each cache operation is written once as a generator of requests (as in :mod:`taskforge.broker`),
driven by :class:`CacheService` (asyncio) and :class:`SyncCacheService` (blocking).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import inspect
import json
import logging
import pickle
import random
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from types import MappingProxyType, MethodType
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

import anyio
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from taskforge.broker import Batch, Command
from taskforge.connection import async_client, sync_client
from taskforge.errors import BrokerError, ConfigurationError, SerializationError
from taskforge.settings import Settings

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

#: The guide's cache types and their default TTLs in seconds.
CACHE_TTLS: Mapping[str, float] = MappingProxyType(
    {
        "workflow_def": 2 * 3600,
        "tenant_config": 30 * 60,
        "provider_config": 30 * 60,
        "api_response": 5 * 60,
        "user_session": 24 * 3600,
        "rate_limit": 60,
        "health_check": 30,
    }
)

AsyncRedis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedis = redis.Redis | redis.cluster.RedisCluster
Serializer = Literal["json", "pickle"]
TTL = float | timedelta

UNLOCK_SCRIPT = (resources.files("taskforge") / "lua" / "cache_unlock.lua").read_text()
_SCAN_COUNT = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask the driver to call the source; the reply is its value (or its exception, thrown in)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Ask the driver to wait ``seconds`` (polling for another process's fill)."""

    seconds: float


Request = Command | Batch | Fetch | Pause
#: A cache operation: yields requests, receives their replies, returns its result.
Op = Generator[Request, Any, T]


@dataclass(slots=True)
class _Failed:
    """A driver's answer when Redis failed mid-operation; ``fetched`` is the source's value if it
    was already called."""

    fetched: Any


_MISSING: Any = object()


@dataclass
class CacheStats:
    """Counters of one cache service (this process only).

    ``hits`` counts answers served from Redis (including values another caller filled while this
    one waited, and stale values); ``misses`` counts calls of the source; ``errors`` counts Redis
    failures that were degraded away.
    """

    hits: int = 0
    misses: int = 0
    stale_hits: int = 0
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, *, hits: int = 0, misses: int = 0, stale: int = 0, errors: int = 0) -> None:
        """Add to the counters (thread-safe)."""
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.stale_hits += stale
            self.errors += errors

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, float]:
        """The counters and the hit rate, for logs and metrics."""
        return {
            "hits": self.hits,
            "misses": self.misses,
            "stale_hits": self.stale_hits,
            "errors": self.errors,
            "hit_rate": round(self.hit_rate, 4),
        }


def _seconds(ttl: TTL) -> float:
    value = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if value <= 0:
        raise ConfigurationError(f"cache TTL must be positive, got {ttl!r}")
    return value


class _Core:
    """What the async and sync services share: keys, TTLs, encoding, counters, outage state and
    the operations themselves."""

    def __init__(
        self,
        settings: Settings,
        *,
        namespace: str,
        serializer: Serializer,
        default_ttl: TTL,
        ttls: Mapping[str, TTL] | None,
        ttl_jitter: float,
        stale_ttl: TTL | None,
        lock_timeout_s: float,
        outage_retry_s: float,
    ):
        if serializer not in ("json", "pickle"):
            raise ConfigurationError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        if not 0 <= ttl_jitter < 1:
            raise ConfigurationError(f"ttl_jitter must be in [0, 1), got {ttl_jitter!r}")
        if not namespace or "*" in namespace or "{" in namespace:
            raise ConfigurationError(f"invalid cache namespace {namespace!r}")
        self.settings = settings
        self.namespace = namespace
        self.serializer = serializer
        self.default_ttl_s = _seconds(default_ttl)
        self.ttls_s = {k: _seconds(v) for k, v in {**CACHE_TTLS, **(ttls or {})}.items()}
        self.ttl_jitter = ttl_jitter
        self.stale_ms = int(_seconds(stale_ttl) * 1000) if stale_ttl else 0
        self.lock_ms = int(lock_timeout_s * 1000)
        self.outage_retry_s = outage_retry_s
        self.stats = CacheStats()
        self._down_until = 0.0
        self._failing = False
        self._state_lock = threading.Lock()

    # ------------------------------------------------------------------ keys and TTLs

    def key(self, key: str, tenant_id: str | int | None, cache_type: str | None = None) -> str:
        """The Redis key of ``key`` (``{cache_type}:{identifier}``) for a tenant or globally."""
        if cache_type is not None:
            key = f"{cache_type}:{key}"
        if not key:
            raise ConfigurationError("cache key must not be empty")
        if tenant_id is None:
            if key.startswith("tenant:"):
                raise ConfigurationError(
                    f"global cache key {key!r} would read as a tenant's key; pass tenant_id="
                )
            return f"{self.namespace}:{key}"
        return f"{self.namespace}:tenant:{_tenant(tenant_id)}:{key}"

    def lock_key(self, full_key: str) -> str:
        """The fill lock of a cache key; outside the ``cache:`` namespace so no pattern hits it."""
        return f"{self.namespace}.lock{full_key[len(self.namespace) :]}"

    def pattern(self, pattern: str, tenant_id: str | int | None, all_tenants: bool) -> str:
        """The SCAN pattern for ``invalidate_pattern`` (the namespace part glob-escaped)."""
        ns = self.namespace.translate(_GLOB_SPECIAL)
        if all_tenants:
            return f"{ns}:tenant:*:{pattern}"
        if tenant_id is None:
            return f"{ns}:{pattern}"
        return f"{ns}:tenant:{_tenant(tenant_id).translate(_GLOB_SPECIAL)}:{pattern}"

    def is_tenant_key(self, full_key: str) -> bool:
        """True for a key in a tenant's namespace (global patterns leave those alone)."""
        return full_key.startswith(f"{self.namespace}:tenant:")

    def ttl_ms(self, full_key: str, ttl: TTL | None) -> int:
        """Milliseconds a fresh value lives: ``ttl``, else its cache type's, minus jitter."""
        if ttl is not None:
            seconds = _seconds(ttl)
        else:
            rest = full_key[len(self.namespace) + 1 :]
            if rest.startswith("tenant:"):
                rest = rest.split(":", 2)[2]
            seconds = self.ttls_s.get(rest.split(":", 1)[0], self.default_ttl_s)
        # Jitter only shortens: many keys written together must not all expire in the same
        # instant, and a TTL is a promise about staleness that must still hold.
        seconds *= 1 - random.uniform(0, self.ttl_jitter)
        return max(1, int(seconds * 1000))

    # ------------------------------------------------------------------ encoding

    def encode(self, value: Any) -> str | bytes:
        """JSON text (default) or pickle bytes (opt-in).

        Raises:
            SerializationError: the value cannot be encoded.
        """
        if self.serializer == "pickle":
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            return json.dumps(value, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"cannot cache {type(value).__name__} as JSON ({exc}); cache JSON data or"
                " opt in to serializer='pickle'"
            ) from exc

    def decode(self, raw: str | bytes | None) -> tuple[bool, Any]:
        """``(found, value)``; a value this serializer cannot read counts as a miss."""
        if raw is None:
            return False, None
        try:
            if self.serializer == "pickle":
                data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
                return True, pickle.loads(data)  # opt-in, documented as for trusted data only
            return True, json.loads(raw)
        except (ValueError, pickle.UnpicklingError, EOFError, TypeError) as exc:
            log.warning("cache: undecodable value ignored (%s)", exc)
            return False, None

    # ------------------------------------------------------------------ outage state

    def redis_usable(self) -> bool:
        """False while a recent connection failure says Redis is down (skip it, go to source)."""
        return time.monotonic() >= self._down_until

    def failed(self, exc: redis.RedisError) -> None:
        """Note a Redis failure: warn once per outage; back off after a connection failure."""
        self.stats.count(errors=1)
        with self._state_lock:
            first = not self._failing
            self._failing = True
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                self._down_until = time.monotonic() + self.outage_retry_s
        if first:
            log.warning(
                "cache: Redis at %s failed (%s); serving from the source until it answers",
                self.settings.masked_url(),
                exc,
            )

    def succeeded(self) -> None:
        """Note a Redis success; ends an outage."""
        if self._failing:
            with self._state_lock:
                recovered, self._failing = self._failing, False
            if recovered:
                log.info("cache: Redis at %s answers again", self.settings.masked_url())

    # ------------------------------------------------------------------ operations

    def answer(self, result: tuple[bool, Any, bool] | _Failed, default: Any) -> Any:
        """What ``get`` returns for a read's result, counting the hit or miss."""
        if isinstance(result, _Failed) or not result[0]:
            self.stats.count(misses=1)
            return default
        self.stats.count(hits=1)
        return result[1]

    def read_op(self, full_key: str, stale_ms: int) -> Op[tuple[bool, Any, bool]]:
        """``(found, value, fresh)``; with a stale window, fresh means more than it remains."""
        if not stale_ms:
            found, value = self.decode((yield Command(("GET", full_key))))
            return found, value, True
        raw, pttl = yield Batch([Command(("GET", full_key)), Command(("PTTL", full_key))])
        found, value = self.decode(raw)
        return found, value, pttl == -1 or pttl > stale_ms

    def set_op(self, full_key: str, value: Any, ttl: TTL | None) -> Op[bool]:
        """Write a value with its TTL (plus the stale window, if any)."""
        encoded = self.encode(value)
        px = self.ttl_ms(full_key, ttl) + self.stale_ms
        yield _cmd("SET", full_key, encoded, "PX", px)
        return True

    def pttl_op(self, full_key: str) -> Op[float | None]:
        """Seconds a key has left (None: absent; ``inf``: no expiry)."""
        pttl = yield Command(("PTTL", full_key))
        if pttl == -2:
            return None
        return float("inf") if pttl == -1 else pttl / 1000

    def get_or_fetch_op(self, full_key: str, ttl: TTL | None, stale_ms: int) -> Op[Any]:
        """The cached value, or the source's, called by one caller across all processes."""
        lock = self.lock_key(full_key)
        token = ""
        give_up_at = time.monotonic() + 2 * self.lock_ms / 1000
        while True:
            found, value, fresh = yield from self.read_op(full_key, stale_ms)
            if found and fresh:
                self.stats.count(hits=1)
                return value
            token = token or secrets.token_hex(8)  # not on the hit path
            if (yield Command(("SET", lock, token, "NX", "PX", self.lock_ms))):
                return (yield from self._fill_op(full_key, lock, token, ttl, stale_ms))
            if found:
                # Stale, and another caller is refreshing it: serve the old value meanwhile.
                self.stats.count(hits=1, stale=1)
                return value
            found, value = yield from self._wait_op(full_key, lock, give_up_at)
            if found:
                self.stats.count(hits=1)
                return value
            if time.monotonic() >= give_up_at:
                # Fillers keep failing or dying: serve this caller without waiting any longer.
                self.stats.count(misses=1)
                return (yield Fetch())

    def _fill_op(
        self, full_key: str, lock: str, token: str, ttl: TTL | None, stale_ms: int
    ) -> Op[Any]:
        self.stats.count(misses=1)
        try:
            value = yield Fetch()
            encoded = self.encode(value)
        except Exception:
            # Free the lock at once so a waiter can try the source itself.
            yield Command(("EVAL", UNLOCK_SCRIPT, 1, lock, token))
            raise
        px = self.ttl_ms(full_key, ttl) + stale_ms
        set_value = _cmd("SET", full_key, encoded, "PX", px)
        yield Batch([set_value, Command(("EVAL", UNLOCK_SCRIPT, 1, lock, token))])
        return value

    def _wait_op(self, full_key: str, lock: str, give_up_at: float) -> Op[tuple[bool, Any]]:
        """Poll until another process fills the key (found) or drops its lock (not found)."""
        delay_s = 0.005
        while time.monotonic() < give_up_at:
            yield Pause(delay_s)
            delay_s = min(delay_s * 2, 0.1)
            raw, locked = yield Batch([Command(("GET", full_key)), Command(("EXISTS", lock))])
            found, value = self.decode(raw)
            if found:
                return True, value
            if not locked:
                return False, None
        return False, None


def _cmd(*args: Any) -> Command:
    # Pickled values travel as bytes, which the broker's Command type does not list.
    return Command(args)


def _tenant(tenant_id: str | int) -> str:
    text = str(tenant_id)
    if not text or ":" in text:
        # A ':' would let tenant "a:b" read tenant "a"'s key "b:...".
        raise ConfigurationError(f"invalid tenant_id {tenant_id!r}: non-empty, without ':'")
    return text


@dataclass
class _Flight:
    """One in-process call of the source that later callers of the same key join."""

    value: Any = _MISSING
    error: BaseException | None = None


# ---------------------------------------------------------------------------------- asyncio


@dataclass
class _LoopState:
    client: AsyncRedis
    flights: dict[str, tuple[_Flight, anyio.Event]] = field(default_factory=dict)


class CacheService:
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
        core = _Core(
            settings if settings is not None else Settings.from_env(),
            namespace=namespace,
            serializer=serializer,
            default_ttl=default_ttl,
            ttls=ttls,
            ttl_jitter=ttl_jitter,
            stale_ttl=stale_ttl,
            lock_timeout_s=lock_timeout_s,
            outage_retry_s=outage_retry_s,
        )
        self._init(core)

    def _init(self, core: _Core) -> None:
        self._core = core
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: SyncCacheService | None = None

    @classmethod
    def _from_core(cls, core: _Core) -> CacheService:
        service = cls.__new__(cls)
        service._init(core)
        return service

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
        if self._sync is None:
            self._sync = SyncCacheService._from_core(self._core)
            self._sync._async = self
        return self._sync

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
        full_key = self._core.key(key, tenant_id, cache_type)
        op = self._core.set_op(full_key, value, ttl)
        if not self._core.redis_usable():
            op.close()
            return False
        result = await self._drive(op, None)
        return not isinstance(result, _Failed)

    async def get(
        self,
        key: str,
        tenant_id: str | int | None = None,
        *,
        default: Any = None,
        cache_type: str | None = None,
    ) -> Any:
        """The cached value, or ``default`` on a miss (or while Redis is unreachable)."""
        full_key = self._core.key(key, tenant_id, cache_type)
        if not self._core.redis_usable():
            self._core.stats.count(misses=1)
            return default
        result = await self._drive(self._core.read_op(full_key, 0), None)
        return self._core.answer(result, default)

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
        full_key = self._core.key(key, tenant_id, cache_type)
        stale_ms = int(_seconds(stale_ttl) * 1000) if stale_ttl else self._core.stale_ms
        flights = self._state().flights
        while (joined := flights.get(full_key)) is not None:
            if stale_ms and self._core.redis_usable():
                # Someone here is refreshing; with a stale window, its old value will do.
                found = await self._drive(self._core.read_op(full_key, stale_ms), None)
                if not isinstance(found, _Failed) and found[0]:
                    self._core.stats.count(hits=1, stale=int(not found[2]))
                    return found[1]
            flight, done = joined
            await done.wait()
            if flight.error is None:
                self._core.stats.count(hits=1)
                return copy.deepcopy(flight.value)
            if isinstance(flight.error, Exception):
                raise flight.error
            # The caller we joined was cancelled: try again, maybe as the one who fetches.
        flight, done = flights[full_key] = (_Flight(), anyio.Event())
        try:
            flight.value = await self._fetch_through(full_key, fetch_func, ttl, stale_ms)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del flights[full_key]
            done.set()

    async def _fetch_through(
        self, full_key: str, fetch_func: Callable[[], Any], ttl: TTL | None, stale_ms: int
    ) -> Any:
        if not self._core.redis_usable():
            self._core.stats.count(misses=1)
            return await _acall(fetch_func)
        result = await self._drive(self._core.get_or_fetch_op(full_key, ttl, stale_ms), fetch_func)
        if not isinstance(result, _Failed):
            return result
        if result.fetched is not _MISSING:
            return result.fetched
        self._core.stats.count(misses=1)
        return await _acall(fetch_func)

    async def invalidate(self, key: str, tenant_id: str | int | None = None) -> bool:
        """Delete one cached value; True if it existed.

        Raises:
            BrokerError: Redis could not be reached (an invalidation is never silently lost).
        """
        full_key = self._core.key(key, tenant_id)
        try:
            removed = await self._state().client.unlink(full_key)
        except redis.RedisError as exc:
            raise _broker_error(exc, self._core) from exc
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
            async for key in client.scan_iter(match=match, count=_SCAN_COUNT):
                if not (skip_tenants and self._core.is_tenant_key(key)):
                    batch.append(key)
                if len(batch) >= _SCAN_COUNT:
                    removed += await client.unlink(*batch)
                    batch.clear()
            if batch:
                removed += await client.unlink(*batch)
            return removed
        except redis.RedisError as exc:
            raise _broker_error(exc, self._core) from exc

    async def ttl(self, key: str, tenant_id: str | int | None = None) -> float | None:
        """Seconds until a cached value expires (stale window included); None if absent, or
        while Redis is unreachable."""
        full_key = self._core.key(key, tenant_id)
        if not self._core.redis_usable():
            return None
        result = await self._drive(self._core.pttl_op(full_key), None)
        return None if isinstance(result, _Failed) else result

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

    async def _drive(self, op: Op[T], fetch_func: Callable[[], Any] | None) -> T | _Failed:
        client = self._state().client
        fetched: Any = _MISSING
        fetch_error: Exception | None = None
        try:
            request = next(op)
            while True:
                if isinstance(request, Fetch):
                    assert fetch_func is not None
                    try:
                        fetched = await _acall(fetch_func)
                    except Exception as exc:
                        fetch_error = exc
                        request = op.throw(exc)
                        continue
                    request = op.send(fetched)
                elif isinstance(request, Pause):
                    await anyio.sleep(request.seconds)
                    request = op.send(None)
                else:
                    request = op.send(await _asend(client, request))
        except StopIteration as done:
            self._core.succeeded()
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            if fetch_error is not None:
                # The source failed (and maybe Redis too, freeing its lock): its error wins.
                raise fetch_error from (None if exc is fetch_error else exc)
            self._core.failed(exc)
            return _Failed(fetched)


async def _asend(client: AsyncRedis, request: Command | Batch) -> Any:
    if isinstance(request, Command):
        return await client.execute_command(*request.args)
    pipe = client.pipeline(transaction=False)
    for command in request.commands:
        pipe.execute_command(*command.args)
    return await pipe.execute()


async def _acall(fetch_func: Callable[[], Any]) -> Any:
    value = fetch_func()
    if inspect.isawaitable(value):
        value = await value
    return value


def _broker_error(exc: redis.RedisError, core: _Core) -> BrokerError:
    return BrokerError(f"cache invalidation failed on {core.settings.masked_url()}: {exc}")


# ---------------------------------------------------------------------------------- blocking


class SyncCacheService:
    """The cache service for blocking code: the same methods as :class:`CacheService`.

    Build it like :class:`CacheService` (same options), or take ``CacheService(...).sync`` to
    share options and counters with an async service.
    """

    def __init__(self, settings: Settings | None = None, **options: Any):
        self._init(CacheService(settings, **options)._core)

    def _init(self, core: _Core) -> None:
        self._core = core
        self._client: SyncRedis | None = None
        self._client_lock = threading.Lock()
        self._flights: dict[str, tuple[_Flight, threading.Event]] = {}
        self._flights_lock = threading.Lock()
        self._async: CacheService | None = None

    @classmethod
    def _from_core(cls, core: _Core) -> SyncCacheService:
        service = cls.__new__(cls)
        service._init(core)
        return service

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
        if self._async is None:
            self._async = CacheService._from_core(self._core)
            self._async._sync = self
        return self._async

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
        full_key = self._core.key(key, tenant_id, cache_type)
        op = self._core.set_op(full_key, value, ttl)
        if not self._core.redis_usable():
            op.close()
            return False
        return not isinstance(self._drive(op, None), _Failed)

    def get(
        self,
        key: str,
        tenant_id: str | int | None = None,
        *,
        default: Any = None,
        cache_type: str | None = None,
    ) -> Any:
        """See :meth:`CacheService.get`."""
        full_key = self._core.key(key, tenant_id, cache_type)
        if not self._core.redis_usable():
            self._core.stats.count(misses=1)
            return default
        result = self._drive(self._core.read_op(full_key, 0), None)
        return self._core.answer(result, default)

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
        full_key = self._core.key(key, tenant_id, cache_type)
        stale_ms = int(_seconds(stale_ttl) * 1000) if stale_ttl else self._core.stale_ms
        while True:
            with self._flights_lock:
                joined = self._flights.get(full_key)
                if joined is None:
                    flight, done = self._flights[full_key] = (_Flight(), threading.Event())
                    break
            if stale_ms and self._core.redis_usable():
                # Someone here is refreshing; with a stale window, its old value will do.
                found = self._drive(self._core.read_op(full_key, stale_ms), None)
                if not isinstance(found, _Failed) and found[0]:
                    self._core.stats.count(hits=1, stale=int(not found[2]))
                    return found[1]
            joined[1].wait()
            if joined[0].error is None:
                self._core.stats.count(hits=1)
                return copy.deepcopy(joined[0].value)
            if isinstance(joined[0].error, Exception):
                raise joined[0].error
        try:
            flight.value = self._fetch_through(full_key, fetch_func, ttl, stale_ms)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                del self._flights[full_key]
            done.set()

    def _fetch_through(
        self, full_key: str, fetch_func: Callable[[], Any], ttl: TTL | None, stale_ms: int
    ) -> Any:
        if not self._core.redis_usable():
            self._core.stats.count(misses=1)
            return _call(fetch_func)
        result = self._drive(self._core.get_or_fetch_op(full_key, ttl, stale_ms), fetch_func)
        if not isinstance(result, _Failed):
            return result
        if result.fetched is not _MISSING:
            return result.fetched
        self._core.stats.count(misses=1)
        return _call(fetch_func)

    def invalidate(self, key: str, tenant_id: str | int | None = None) -> bool:
        """See :meth:`CacheService.invalidate`."""
        full_key = self._core.key(key, tenant_id)
        try:
            return bool(self.client.unlink(full_key))
        except redis.RedisError as exc:
            raise _broker_error(exc, self._core) from exc

    def invalidate_pattern(
        self, pattern: str, tenant_id: str | int | None = None, *, all_tenants: bool = False
    ) -> int:
        """See :meth:`CacheService.invalidate_pattern` (SCAN + UNLINK in batches)."""
        match = self._core.pattern(pattern, tenant_id, all_tenants)
        skip_tenants = tenant_id is None and not all_tenants
        removed = 0
        batch: list[str] = []
        try:
            for key in self.client.scan_iter(match=match, count=_SCAN_COUNT):
                if not (skip_tenants and self._core.is_tenant_key(key)):
                    batch.append(key)
                if len(batch) >= _SCAN_COUNT:
                    removed += int(self.client.unlink(*batch))
                    batch.clear()
            if batch:
                removed += int(self.client.unlink(*batch))
            return removed
        except redis.RedisError as exc:
            raise _broker_error(exc, self._core) from exc

    def ttl(self, key: str, tenant_id: str | int | None = None) -> float | None:
        """See :meth:`CacheService.ttl`."""
        full_key = self._core.key(key, tenant_id)
        if not self._core.redis_usable():
            return None
        result = self._drive(self._core.pttl_op(full_key), None)
        return None if isinstance(result, _Failed) else result

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

    def _drive(self, op: Op[T], fetch_func: Callable[[], Any] | None) -> T | _Failed:
        fetched: Any = _MISSING
        fetch_error: Exception | None = None
        try:
            request = next(op)
            while True:
                if isinstance(request, Fetch):
                    assert fetch_func is not None
                    try:
                        fetched = _call(fetch_func)
                    except Exception as exc:
                        fetch_error = exc
                        request = op.throw(exc)
                        continue
                    request = op.send(fetched)
                elif isinstance(request, Pause):
                    time.sleep(request.seconds)
                    request = op.send(None)
                else:
                    request = op.send(self._send(request))
        except StopIteration as done:
            self._core.succeeded()
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            if fetch_error is not None:
                # The source failed (and maybe Redis too, freeing its lock): its error wins.
                raise fetch_error from (None if exc is fetch_error else exc)
            self._core.failed(exc)
            return _Failed(fetched)

    def _send(self, request: Command | Batch) -> Any:
        if isinstance(request, Command):
            return self.client.execute_command(*request.args)  # type: ignore[no-untyped-call,unused-ignore]
        pipe = self.client.pipeline(transaction=False)
        for command in request.commands:
            pipe.execute_command(*command.args)  # type: ignore[no-untyped-call,unused-ignore]
        return pipe.execute()


def _call(fetch_func: Callable[[], Any]) -> Any:
    value = fetch_func()
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()
        raise TypeError("SyncCacheService needs a plain fetch_func; use CacheService for async")
    return value


# ---------------------------------------------------------------------------------- defaults

_default_lock = threading.Lock()
_default: CacheService | None = None


def configure_cache(service: CacheService | Settings | None = None, **options: Any) -> CacheService:
    """Replace the service :func:`get_cache_service` returns (``None``: from the environment)."""
    global _default
    if not isinstance(service, CacheService):
        service = CacheService(service, **options)
    with _default_lock:
        _default = service
    return service


def default_cache_service() -> CacheService:
    """The process-wide cache service, built from ``Settings.from_env()`` on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = CacheService()
        return _default


async def get_cache_service() -> CacheService:
    """The guide's ``cache = await get_cache_service()``: the process-wide service."""
    return default_cache_service()


def get_sync_cache_service() -> SyncCacheService:
    """The blocking twin of the process-wide service."""
    return default_cache_service().sync


# ---------------------------------------------------------------------------------- @cached


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
