"""The cache's core: options, keys, TTLs, encoding, counters and Redis's health, without I/O.

One :class:`CacheCore` is shared by a service and its twin (``CacheService(...).sync``), so both
read the same options and count into the same :class:`CacheStats`.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Literal

import redis

from taskforge.errors import BrokerError, ConfigurationError, SerializationError
from taskforge.settings import Settings

__all__ = [
    "CACHE_TTLS",
    "SCAN_COUNT",
    "TTL",
    "CacheCore",
    "CacheShell",
    "CacheStats",
    "Serializer",
    "seconds",
]

# The package's logger, as before the split: handlers set on "taskforge.cache" keep working.
log = logging.getLogger("taskforge.cache")

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

Serializer = Literal["json", "pickle"]
TTL = float | timedelta

#: Keys asked of each SCAN step, and removed by each UNLINK, in ``invalidate_pattern``.
SCAN_COUNT = 1000
_GLOB_SPECIAL = str.maketrans({c: "\\" + c for c in "*?[]\\"})


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


def seconds(ttl: TTL) -> float:
    """A TTL in seconds.

    Raises:
        ConfigurationError: the TTL is not positive.
    """
    value = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if value <= 0:
        raise ConfigurationError(f"cache TTL must be positive, got {ttl!r}")
    return value


def _tenant(tenant_id: str | int) -> str:
    text = str(tenant_id)
    if not text or ":" in text:
        # A ':' would let tenant "a:b" read tenant "a"'s key "b:...".
        raise ConfigurationError(f"invalid tenant_id {tenant_id!r}: non-empty, without ':'")
    return text


class CacheCore:
    """What the async and sync services share: options, keys, TTLs, encoding, counters and
    the outage state (see :class:`~taskforge.cache.CacheService` for the options)."""

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
        if serializer not in ("json", "pickle"):
            raise ConfigurationError(f"serializer must be 'json' or 'pickle', got {serializer!r}")
        if not 0 <= ttl_jitter < 1:
            raise ConfigurationError(f"ttl_jitter must be in [0, 1), got {ttl_jitter!r}")
        if not namespace or "*" in namespace or "{" in namespace:
            raise ConfigurationError(f"invalid cache namespace {namespace!r}")
        self.settings = settings if settings is not None else Settings.from_env()
        self.namespace = namespace
        self.serializer = serializer
        self.default_ttl_s = seconds(default_ttl)
        self.ttls_s = {k: seconds(v) for k, v in {**CACHE_TTLS, **(ttls or {})}.items()}
        self.ttl_jitter = ttl_jitter
        self.stale_ms = int(seconds(stale_ttl) * 1000) if stale_ttl else 0
        self.lock_ms = int(lock_timeout_s * 1000)
        self.outage_retry_s = outage_retry_s
        self.stats = CacheStats()
        #: The services built on this core, by kind ("aio", "sync"): each twin exists once.
        self.shells: dict[str, CacheShell] = {}
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
            ttl_s = seconds(ttl)
        else:
            rest = full_key[len(self.namespace) + 1 :]
            if rest.startswith("tenant:"):
                rest = rest.split(":", 2)[2]
            ttl_s = self.ttls_s.get(rest.split(":", 1)[0], self.default_ttl_s)
        # Jitter only shortens: many keys written together must not all expire in the same
        # instant, and a TTL is a promise about staleness that must still hold.
        ttl_s *= 1 - random.uniform(0, self.ttl_jitter)
        return max(1, int(ttl_s * 1000))

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

    def invalidation_error(self, exc: redis.RedisError) -> BrokerError:
        """The error an invalidation raises (never degraded: a lost one would serve stale data)."""
        return BrokerError(f"cache invalidation failed on {self.settings.masked_url()}: {exc}")


class CacheShell:
    """What every service over a :class:`CacheCore` has: the core, and its twins (the same core
    driven by another kind of I/O).

    A subclass names its kind (``class CacheService(CacheShell, kind="aio")``), so that a service
    can build its twin by kind, without the twins' modules importing each other.
    """

    _kinds: ClassVar[dict[str, type[CacheShell]]] = {}
    _kind: ClassVar[str]
    _core: CacheCore

    def __init_subclass__(cls, *, kind: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        CacheShell._kinds[kind] = cls
        cls._kind = kind

    def _attach(self, core: CacheCore) -> None:
        """Build on ``core`` (every constructor ends here) and become its twin of this kind."""
        self._core = core
        core.shells[self._kind] = self

    @classmethod
    def _on(cls, core: CacheCore) -> CacheShell:
        service = cls.__new__(cls)
        service._attach(core)
        return service

    def _twin(self, kind: str) -> CacheShell:
        twin = self._core.shells.get(kind)
        return twin if twin is not None else CacheShell._kinds[kind]._on(self._core)
