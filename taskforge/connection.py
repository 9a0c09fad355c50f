"""Redis clients built from :class:`~taskforge.settings.Settings` (pooling, timeouts, TLS, retries).

``memory://`` (optionally ``memory://name``) gives an in-process fakeredis server shared by every
client of this process that names it; it exists for ``taskforge demo``, the examples and tests.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry as RedisRetry

from taskforge.settings import MEMORY_URL, Settings

_memory_lock = threading.Lock()
_memory_servers: dict[str, Any] = {}


def memory_server(url: str) -> Any:
    """The process-wide fakeredis server behind a ``memory://`` URL."""
    import fakeredis

    name = url[len(MEMORY_URL) :] or "default"
    with _memory_lock:
        if name not in _memory_servers:
            _memory_servers[name] = fakeredis.FakeServer(version=(7, 2))
        return _memory_servers[name]


def _common_kwargs(settings: Settings, *, socket_timeout_s: float | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        # Any bytes round-trip: foreign data in our keys must not crash a decode.
        "encoding_errors": "surrogateescape",
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": settings.socket_connect_timeout_s,
        "retry_on_timeout": settings.retry_on_timeout,
        "max_connections": settings.max_connections,
        "health_check_interval": 30,
    }
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password
    if settings.ssl or settings.redis_url.startswith("rediss://"):
        kwargs.update(
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
        )
    return kwargs


def _url(settings: Settings) -> str:
    url = settings.redis_url
    if settings.ssl and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://") :]
    return url


def _retry(settings: Settings) -> RedisRetry:
    return RedisRetry(ExponentialBackoff(cap=2.0, base=0.05), settings.connect_retries)


def async_client(settings: Settings, *, blocking_s: float | None = None) -> redis.asyncio.Redis:
    """An asyncio client with its own pool.

    ``blocking_s`` marks a client used for blocking commands of up to that many seconds: its
    socket timeout is longer than the block, so a slow reply is never mistaken for a dead socket.
    """
    timeout_s = settings.socket_timeout_s
    if blocking_s is not None:
        timeout_s = max(timeout_s, blocking_s + 5.0)
    if settings.is_memory:
        import fakeredis.aioredis

        return fakeredis.aioredis.FakeRedis(
            server=memory_server(settings.redis_url),
            decode_responses=True,
            encoding_errors="surrogateescape",
        )
    kwargs = _common_kwargs(settings, socket_timeout_s=timeout_s)
    return redis.asyncio.Redis.from_url(_url(settings), retry=_retry(settings), **kwargs)


def sync_client(settings: Settings) -> redis.Redis:
    """A blocking client with its own pool, for the synchronous producer API and the CLI."""
    if settings.is_memory:
        import fakeredis

        return fakeredis.FakeRedis(
            server=memory_server(settings.redis_url),
            decode_responses=True,
            encoding_errors="surrogateescape",
        )
    kwargs = _common_kwargs(settings, socket_timeout_s=settings.socket_timeout_s)
    return redis.Redis.from_url(_url(settings), retry=_retry(settings), **kwargs)
