"""The cache's operations, written once as generators of requests (sans I/O).

An operation yields a request (a Redis :class:`~taskforge.driver.requests.Command` or
:class:`~taskforge.driver.requests.Batch`, a :class:`Fetch` of the source, a :class:`Pause`, a
:class:`Wait` for another caller's fetch) and receives its reply; a failed request is thrown
into it. :class:`CacheService` (asyncio) and :class:`SyncCacheService` (blocking) only perform the
requests; everything else, the degradation when Redis fails included, happens here once.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, Protocol, TypeVar

import redis

from taskforge.cache.core import TTL, CacheCore, seconds
from taskforge.driver.requests import Batch, Command

__all__ = [
    "MISSING",
    "UNLOCK_SCRIPT",
    "CacheOps",
    "Failed",
    "Fetch",
    "Flights",
    "Op",
    "Pause",
    "Request",
    "Wait",
]

T = TypeVar("T")

UNLOCK_SCRIPT = (resources.files("taskforge.cache") / "unlock.lua").read_text()


@dataclass(frozen=True, slots=True)
class Fetch:
    """Ask the driver to call the source; the reply is its value (or its exception, thrown in)."""


@dataclass(frozen=True, slots=True)
class Pause:
    """Ask the driver to wait ``seconds`` (polling for another process's fill)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask the driver to wait until ``done`` (the driver's kind of event) is set."""

    done: Any


Request = Command | Batch | Fetch | Pause | Wait
#: A cache operation: yields requests, receives their replies, returns its result.
Op = Generator[Request, Any, T]

MISSING: Any = object()


@dataclass(slots=True)
class Failed:
    """The result of an operation Redis failed; ``fetched`` is the source's value if it was
    already called."""

    fetched: Any


class _Event(Protocol):
    def set(self) -> None: ...


E = TypeVar("E", bound=_Event)


@dataclass
class _Flight(Generic[E]):
    """One in-process call of the source that later callers of the same key join."""

    done: E
    value: Any = MISSING
    error: BaseException | None = None


@dataclass
class Flights(Generic[E]):
    """The calls of the source in flight in this process (or event loop), by key."""

    new_event: Callable[[], E]
    _flights: dict[str, _Flight[E]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lead_or_join(self, full_key: str) -> tuple[_Flight[E], bool]:
        """The key's flight, and True if the caller starts it (and must :meth:`land` it)."""
        with self._lock:
            flight = self._flights.get(full_key)
            if flight is not None:
                return flight, False
            flight = self._flights[full_key] = _Flight(self.new_event())
            return flight, True

    def land(self, full_key: str) -> None:
        """End the key's flight and wake those who joined it."""
        with self._lock:
            flight = self._flights.pop(full_key)
        flight.done.set()


def _cmd(*args: Any) -> Command:
    # Pickled values travel as bytes, which the broker's Command type does not list.
    return Command(args)


class CacheOps:
    """The services' operations over one :class:`CacheCore`; each method is an :data:`Op`."""

    def __init__(self, core: CacheCore):
        self.core = core

    # ------------------------------------------------------------------ the services' methods

    def get(
        self, key: str, tenant_id: str | int | None, default: Any, cache_type: str | None
    ) -> Op[Any]:
        """``get``: the cached value, or ``default``."""
        full_key = self.core.key(key, tenant_id, cache_type)
        if not self.core.redis_usable():
            self.core.stats.count(misses=1)
            return default
        result = yield from self.guarded(self._read(full_key, 0))
        if isinstance(result, Failed) or not result[0]:
            self.core.stats.count(misses=1)
            return default
        self.core.stats.count(hits=1)
        return result[1]

    def set(
        self,
        key: str,
        value: Any,
        ttl: TTL | None,
        tenant_id: str | int | None,
        cache_type: str | None,
    ) -> Op[bool]:
        """``set``: False when Redis could not be written."""
        full_key = self.core.key(key, tenant_id, cache_type)
        if not self.core.redis_usable():
            return False
        result = yield from self.guarded(self._write(full_key, value, ttl))
        return not isinstance(result, Failed)

    def ttl(self, key: str, tenant_id: str | int | None) -> Op[float | None]:
        """``ttl``: seconds a key has left (None: absent, or Redis unreachable)."""
        full_key = self.core.key(key, tenant_id)
        if not self.core.redis_usable():
            return None
        result = yield from self.guarded(self._pttl(full_key))
        return None if isinstance(result, Failed) else result

    def get_or_fetch(
        self,
        flights: Flights[Any],
        key: str,
        ttl: TTL | None,
        tenant_id: str | int | None,
        cache_type: str | None,
        stale_ttl: TTL | None,
    ) -> Op[Any]:
        """``get_or_fetch``: callers of one key in ``flights`` share one call of the source."""
        full_key = self.core.key(key, tenant_id, cache_type)
        stale_ms = int(seconds(stale_ttl) * 1000) if stale_ttl else self.core.stale_ms
        while True:
            flight, leading = flights.lead_or_join(full_key)
            if leading:
                break
            if stale_ms and self.core.redis_usable():
                # Someone here is refreshing; with a stale window, its old value will do.
                found = yield from self.guarded(self._read(full_key, stale_ms))
                if not isinstance(found, Failed) and found[0]:
                    self.core.stats.count(hits=1, stale=int(not found[2]))
                    return found[1]
            yield Wait(flight.done)
            if flight.error is None:
                self.core.stats.count(hits=1)
                return copy.deepcopy(flight.value)
            if isinstance(flight.error, Exception):
                raise flight.error
            # The caller we joined was cancelled: try again, maybe as the one who fetches.
        try:
            flight.value = yield from self._fetch_through(full_key, ttl, stale_ms)
            return flight.value
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            flights.land(full_key)

    def _fetch_through(self, full_key: str, ttl: TTL | None, stale_ms: int) -> Op[Any]:
        if not self.core.redis_usable():
            self.core.stats.count(misses=1)
            return (yield Fetch())
        result = yield from self.guarded(self._shared_fetch(full_key, ttl, stale_ms))
        if not isinstance(result, Failed):
            return result
        if result.fetched is not MISSING:
            return result.fetched
        self.core.stats.count(misses=1)
        return (yield Fetch())

    # ------------------------------------------------------------------ degradation

    def guarded(self, op: Op[T]) -> Op[T | Failed]:
        """``op``, with Redis failures turned into :class:`Failed` (and noted on the core).

        An error of the source is thrown into ``op`` (which frees its fill lock) and wins over
        any Redis failure that follows it.
        """
        fetched: Any = MISSING
        fetch_error: Exception | None = None
        try:
            request = next(op)
            while True:
                if not isinstance(request, Fetch):
                    request = op.send((yield request))
                    continue
                try:
                    fetched = yield request
                except Exception as exc:
                    fetch_error = exc
                    request = op.throw(exc)
                    continue
                request = op.send(fetched)
        except StopIteration as done:
            self.core.succeeded()
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            if fetch_error is not None:
                # The source failed (and maybe Redis too, freeing its lock): its error wins.
                raise fetch_error from (None if exc is fetch_error else exc)
            self.core.failed(exc)
            return Failed(fetched)

    # ------------------------------------------------------------------ Redis steps

    def _read(self, full_key: str, stale_ms: int) -> Op[tuple[bool, Any, bool]]:
        """``(found, value, fresh)``; with a stale window, fresh means more than it remains."""
        if not stale_ms:
            found, value = self.core.decode((yield Command(("GET", full_key))))
            return found, value, True
        raw, pttl = yield Batch([Command(("GET", full_key)), Command(("PTTL", full_key))])
        found, value = self.core.decode(raw)
        return found, value, pttl == -1 or pttl > stale_ms

    def _write(self, full_key: str, value: Any, ttl: TTL | None) -> Op[bool]:
        """Write a value with its TTL (plus the stale window, if any)."""
        encoded = self.core.encode(value)
        px = self.core.ttl_ms(full_key, ttl) + self.core.stale_ms
        yield _cmd("SET", full_key, encoded, "PX", px)
        return True

    def _pttl(self, full_key: str) -> Op[float | None]:
        """Seconds a key has left (None: absent; ``inf``: no expiry)."""
        pttl = yield Command(("PTTL", full_key))
        if pttl == -2:
            return None
        return float("inf") if pttl == -1 else pttl / 1000

    def _shared_fetch(self, full_key: str, ttl: TTL | None, stale_ms: int) -> Op[Any]:
        """The cached value, or the source's, called by one caller across all processes."""
        lock = self.core.lock_key(full_key)
        token = ""
        give_up_at = time.monotonic() + 2 * self.core.lock_ms / 1000
        while True:
            found, value, fresh = yield from self._read(full_key, stale_ms)
            if found and fresh:
                self.core.stats.count(hits=1)
                return value
            token = token or secrets.token_hex(8)  # not on the hit path
            if (yield Command(("SET", lock, token, "NX", "PX", self.core.lock_ms))):
                return (yield from self._fill(full_key, lock, token, ttl, stale_ms))
            if found:
                # Stale, and another caller is refreshing it: serve the old value meanwhile.
                self.core.stats.count(hits=1, stale=1)
                return value
            found, value = yield from self._wait_for_fill(full_key, lock, give_up_at)
            if found:
                self.core.stats.count(hits=1)
                return value
            if time.monotonic() >= give_up_at:
                # Fillers keep failing or dying: serve this caller without waiting any longer.
                self.core.stats.count(misses=1)
                return (yield Fetch())

    def _fill(
        self, full_key: str, lock: str, token: str, ttl: TTL | None, stale_ms: int
    ) -> Op[Any]:
        self.core.stats.count(misses=1)
        try:
            value = yield Fetch()
            encoded = self.core.encode(value)
        except Exception:
            # Free the lock at once so a waiter can try the source itself.
            yield Command(("EVAL", UNLOCK_SCRIPT, 1, lock, token))
            raise
        px = self.core.ttl_ms(full_key, ttl) + stale_ms
        set_value = _cmd("SET", full_key, encoded, "PX", px)
        yield Batch([set_value, Command(("EVAL", UNLOCK_SCRIPT, 1, lock, token))])
        return value

    def _wait_for_fill(self, full_key: str, lock: str, give_up_at: float) -> Op[tuple[bool, Any]]:
        """Poll until another process fills the key (found) or drops its lock (not found)."""
        delay_s = 0.005
        while time.monotonic() < give_up_at:
            yield Pause(delay_s)
            delay_s = min(delay_s * 2, 0.1)
            raw, locked = yield Batch([Command(("GET", full_key)), Command(("EXISTS", lock))])
            found, value = self.core.decode(raw)
            if found:
                return True, value
            if not locked:
                return False, None
        return False, None
