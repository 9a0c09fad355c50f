"""Redis clients built from :class:`~taskforge.settings.Settings` (pooling, timeouts, TLS, retries).

The URL's scheme picks the deployment; every kind gets the same pool, timeout, auth and TLS
settings:

* ``redis://host:6379/0`` (``rediss://`` for TLS): one Redis.
* ``redis+cluster://host:7000,host:7001`` (``rediss+cluster://``), or ``REDIS_CLUSTER_NODES``:
  a Redis Cluster, discovered from any of the seed nodes. Each queue lives in one hash slot.
* ``redis+sentinel://host:26379,host:26380/mymaster[/db]`` (``rediss+sentinel://``): the
  primary that the Sentinels name for ``mymaster``; after a failover new connections follow
  the promoted replica. ``REDIS_SENTINEL_PASSWORD`` authenticates to the Sentinels themselves.
* ``memory://`` (optionally ``memory://name``): an in-process fakeredis server shared by every
  client of this process that names it; for ``taskforge demo``, the examples and tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from pydantic import SecretStr
from redis.asyncio.retry import Retry as AsyncRedisRetry
from redis.backoff import ExponentialBackoff
from redis.driver_info import DriverInfo
from redis.retry import Retry as RedisRetry

from taskforge.errors import ConfigurationError
from taskforge.settings import MEMORY_URL, Settings

#: A blocking client of any deployment kind.
SyncRedis = redis.Redis | redis.cluster.RedisCluster
#: An asyncio client of any deployment kind.
AsyncRedis = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

Kind = Literal["single", "cluster", "sentinel", "memory"]

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


def forget_memory_server(url: str) -> None:
    """Drop the fakeredis server behind a ``memory://`` URL (a test's private one), freeing it."""
    with _memory_lock:
        _memory_servers.pop(url[len(MEMORY_URL) :] or "default", None)


# --------------------------------------------------------------------------- what to connect to


@dataclass(frozen=True, slots=True)
class Topology:
    """Where Redis is, parsed from the settings: its kind, seed nodes, service, auth, TLS."""

    kind: Kind
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def topology(settings: Settings) -> Topology:
    """Parse ``redis_url`` (and ``cluster_nodes``) into a :class:`Topology`.

    Raises:
        ConfigurationError: the URL names no hosts, a bad port, or a sentinel URL has no service.
    """
    url = settings.redis_url
    if settings.is_memory:
        return Topology("memory")
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if "+" not in scheme:  # one host: urllib reads its port lazily, make it refuse a typo now
            _ = parts.port
        password = unquote(parts.password) if parts.password else _secret(settings.redis_password)
    except ValueError as exc:  # "Invalid IPv6 URL", a port that is not a number
        raise ConfigurationError(
            f"cannot use Redis URL {settings.masked_url()}: {settings.scrub(str(exc))}; expected"
            " e.g. redis://host:6379/0 or redis://[::1]:6379/0"
        ) from None
    tls = settings.ssl or scheme.startswith("rediss")
    username = unquote(parts.username) if parts.username else None
    if settings.cluster_nodes:
        nodes = parse_nodes(settings.cluster_nodes, default_port=6379)
        return Topology("cluster", nodes, "", 0, username, password, tls)
    hosts = parts.netloc.rsplit("@", 1)[-1]
    segments = [s for s in parts.path.split("/") if s]
    if scheme in {"redis+cluster", "rediss+cluster"}:
        if segments and segments != ["0"]:
            raise ConfigurationError(f"{settings.masked_url()}: a Redis Cluster has only db 0")
        return Topology("cluster", parse_nodes(hosts, 6379), "", 0, username, password, tls)
    if scheme in {"redis+sentinel", "rediss+sentinel"}:
        if not segments:
            raise ConfigurationError(
                f"{settings.masked_url()}: name the monitored service, e.g."
                " redis+sentinel://host:26379/mymaster"
            )
        db = _db(segments[1] if len(segments) > 1 else "0", settings)
        nodes = parse_nodes(hosts, 26379)
        return Topology("sentinel", nodes, segments[0], db, username, password, tls)
    return Topology("single", (), "", 0, username, password, tls)


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def parse_nodes(text: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """``"h1:7000,h2:7001"`` as ``(("h1", 7000), ("h2", 7001))``.

    Raises:
        ConfigurationError: no host, or a port that is not a number.
    """
    nodes = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep:
            host, port = item, str(default_port)
        if not host or not port.isdigit():
            raise ConfigurationError(f"bad Redis node {item!r}: expected host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ConfigurationError(f"no Redis nodes in {text!r}: expected host:port,host:port")
    return tuple(nodes)


def _db(text: str, settings: Settings) -> int:
    if not text.isdigit():
        raise ConfigurationError(f"{settings.masked_url()}: db must be a number, got {text!r}")
    return int(text)


# --------------------------------------------------------------------------- client options


def _tls_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "ssl": True,
        "ssl_ca_certs": settings.ssl_ca_certs,
        "ssl_certfile": settings.ssl_certfile,
        "ssl_keyfile": settings.ssl_keyfile,
    }


def _auth_kwargs(topo: Topology) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if topo.password is not None:
        kwargs["password"] = topo.password
    if topo.username is not None:
        kwargs["username"] = topo.username
    return kwargs


# What redis-py would send in CLIENT SETINFO, from its version string: by default each new
# connection reads the version from the installed package's metadata (importlib.metadata, which
# imports the email package on first use: ~2 ms of a worker's start, then ~0.5 ms a connection).
_DRIVER = DriverInfo(name="redis-py", lib_version=redis.__version__)


def _common_kwargs(settings: Settings, *, socket_timeout_s: float | None) -> dict[str, Any]:
    return {
        "driver_info": _DRIVER,
        "decode_responses": True,
        # Any bytes round-trip: foreign data in our keys must not crash a decode.
        "encoding_errors": "surrogateescape",
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": settings.socket_connect_timeout_s,
        "max_connections": settings.max_connections,
        "health_check_interval": 30,
    }


def _single_kwargs(settings: Settings, *, socket_timeout_s: float | None) -> dict[str, Any]:
    kwargs = _common_kwargs(settings, socket_timeout_s=socket_timeout_s)
    kwargs["retry_on_timeout"] = settings.retry_on_timeout
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password.get_secret_value()
    if settings.ssl or settings.redis_url.startswith("rediss://"):
        kwargs.update(
            ssl_ca_certs=settings.ssl_ca_certs,
            ssl_certfile=settings.ssl_certfile,
            ssl_keyfile=settings.ssl_keyfile,
        )
    return kwargs


def cluster_kwargs(
    settings: Settings, topo: Topology, *, socket_timeout_s: float | None
) -> dict[str, Any]:
    """Keyword arguments for ``RedisCluster`` (``max_connections`` is per node)."""
    kwargs = _common_kwargs(settings, socket_timeout_s=socket_timeout_s)
    kwargs.update(_auth_kwargs(topo))
    if topo.tls:
        kwargs.update(_tls_kwargs(settings))
    return kwargs


def sentinel_kwargs(
    settings: Settings, topo: Topology, *, socket_timeout_s: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(options for the primary's pool, options for the Sentinel connections)``."""
    primary = _common_kwargs(settings, socket_timeout_s=socket_timeout_s)
    primary["retry_on_timeout"] = settings.retry_on_timeout
    primary["db"] = topo.db
    primary.update(_auth_kwargs(topo))
    sentinels: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_connect_timeout_s,
        "decode_responses": True,
    }
    if settings.sentinel_password is not None:
        sentinels["password"] = settings.sentinel_password.get_secret_value()
    if topo.tls:
        primary.update(_tls_kwargs(settings))
        sentinels.update(_tls_kwargs(settings))
    return primary, sentinels


def _url(settings: Settings) -> str:
    url = settings.redis_url
    if settings.ssl and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://") :]
    return url


def _retry(settings: Settings) -> RedisRetry:
    return RedisRetry(ExponentialBackoff(cap=2.0, base=0.05), settings.connect_retries)


def _async_retry(settings: Settings) -> AsyncRedisRetry:
    # The asyncio client awaits its Retry: a blocking Retry would never retry anything.
    return AsyncRedisRetry(ExponentialBackoff(cap=2.0, base=0.05), settings.connect_retries)


# --------------------------------------------------------------------------- the clients


class _ClusterPubSub(redis.asyncio.cluster.ClusterPubSub):
    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # SUBSCRIBE picks its node from the slot map, which the client reads lazily: a client
        # whose first use is a subscription has none yet.
        await self.cluster.initialize()
        return await super().execute_command(*args, **kwargs)


class AsyncRedisCluster(redis.asyncio.cluster.RedisCluster):
    """The asyncio cluster client, with pub/sub usable as its first command."""

    def pubsub(
        self,
        node: redis.asyncio.cluster.ClusterNode | None = None,
        host: str | None = None,
        port: int | None = None,
        **kwargs: Any,
    ) -> redis.asyncio.cluster.ClusterPubSub:
        """A cluster pub/sub (regular channels reach subscribers on any node)."""
        return _ClusterPubSub(self, node=node, host=host, port=port, **kwargs)


def async_client(settings: Settings, *, blocking_s: float | None = None) -> AsyncRedis:
    """An asyncio client with its own pool (one pool per node on a cluster).

    ``blocking_s`` marks a client used for blocking commands of up to that many seconds: its
    socket timeout is longer than the block, so a slow reply is never mistaken for a dead socket.
    """
    timeout_s = settings.socket_timeout_s
    if blocking_s is not None:
        timeout_s = max(timeout_s, blocking_s + 5.0)
    topo = topology(settings)
    if topo.kind == "memory":
        import fakeredis.aioredis

        client: redis.asyncio.Redis = fakeredis.aioredis.FakeRedis(
            server=memory_server(settings.redis_url),
            decode_responses=True,
            encoding_errors="surrogateescape",
        )
        return client
    if topo.kind == "cluster":
        return AsyncRedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in topo.nodes],
            retry=_async_retry(settings),
            **cluster_kwargs(settings, topo, socket_timeout_s=timeout_s),
        )
    if topo.kind == "sentinel":
        primary, sentinels = sentinel_kwargs(settings, topo, socket_timeout_s=timeout_s)
        manager = redis.asyncio.sentinel.Sentinel(list(topo.nodes), sentinel_kwargs=sentinels)  # type: ignore[no-untyped-call]
        return manager.master_for(  # type: ignore[no-any-return]
            topo.service, redis_class=redis.asyncio.Redis, retry=_async_retry(settings), **primary
        )
    kwargs = _single_kwargs(settings, socket_timeout_s=timeout_s)
    return redis.asyncio.Redis.from_url(_url(settings), retry=_async_retry(settings), **kwargs)


def sync_client(settings: Settings) -> SyncRedis:
    """A blocking client with its own pool, for the synchronous producer API and the CLI."""
    topo = topology(settings)
    timeout_s = settings.socket_timeout_s
    if topo.kind == "memory":
        import fakeredis

        client: redis.Redis = fakeredis.FakeRedis(
            server=memory_server(settings.redis_url),
            decode_responses=True,
            encoding_errors="surrogateescape",
        )
        return client
    if topo.kind == "cluster":
        kwargs = cluster_kwargs(settings, topo, socket_timeout_s=timeout_s)
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in topo.nodes],  # type: ignore[no-untyped-call]
            retry=_retry(settings),
            **kwargs,
        )
    if topo.kind == "sentinel":
        primary, sentinels = sentinel_kwargs(settings, topo, socket_timeout_s=timeout_s)
        manager = redis.sentinel.Sentinel(list(topo.nodes), sentinel_kwargs=sentinels)  # type: ignore[no-untyped-call]
        return manager.master_for(  # type: ignore[no-untyped-call,no-any-return]
            topo.service, redis_class=redis.Redis, retry=_retry(settings), **primary
        )
    kwargs = _single_kwargs(settings, socket_timeout_s=timeout_s)
    return redis.Redis.from_url(_url(settings), retry=_retry(settings), **kwargs)


def is_cluster(client: SyncRedis | AsyncRedis) -> bool:
    """True for a Redis Cluster client (commands without keys must pick their nodes)."""
    return isinstance(client, redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster)


def routable(client: SyncRedis | AsyncRedis, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` as a cluster client can route them: ``("CONFIG", "GET", x)`` becomes
    ``("CONFIG GET", x)``, the name redis-py keys its node flags by (it is sent as two words)."""
    cluster = redis.cluster.RedisCluster | redis.asyncio.cluster.RedisCluster
    if len(args) >= 2 and isinstance(client, cluster):
        name = f"{args[0]} {args[1]}".upper()
        if name in client.command_flags:
            return (name, *args[2:])
    return args


def same_node(client: SyncRedis, key: str) -> dict[str, Any]:
    """Options that send a keyless command (``WAIT``) in a pipeline to the node serving ``key``.

    ``WAIT`` counts the replicas that have this connection's writes, so it must travel on the
    connection that wrote: in a cluster pipeline that is the connection to the key's node.
    """
    if isinstance(client, redis.cluster.RedisCluster):
        return {"target_nodes": client.get_node_from_key(key)}  # type: ignore[no-untyped-call]
    return {}


async def async_same_node(client: AsyncRedis, key: str) -> dict[str, Any]:
    """Async :func:`same_node` (initialises the cluster's slot map on first use)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()
        return {"target_nodes": client.get_node_from_key(key)}
    return {}


def primaries(client: SyncRedis) -> list[redis.Redis]:
    """One plain client per primary: the whole server for a single Redis, each primary of a
    cluster. For commands that must gather from every node (``SCAN``, ``INFO``)."""
    if isinstance(client, redis.cluster.RedisCluster):
        return [client.get_redis_connection(node) for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client]


__all__ = [
    "AsyncRedis",
    "AsyncRedisCluster",
    "Kind",
    "SyncRedis",
    "Topology",
    "async_client",
    "async_same_node",
    "cluster_kwargs",
    "forget_memory_server",
    "is_cluster",
    "memory_server",
    "parse_nodes",
    "primaries",
    "routable",
    "same_node",
    "sentinel_kwargs",
    "sync_client",
    "topology",
]
