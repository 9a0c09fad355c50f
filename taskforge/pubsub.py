"""The integration guide's Redis client: JSON pub/sub for real-time events, and health checks.

Code written against the guide runs with only its imports changed::

    from taskforge import get_redis_client
    redis = await get_redis_client()
    await redis.publish("workflow:events", {"event_type": "workflow.started", ...})
    async for message in redis.subscribe("workflow:events"):
        print(message["data"]["event_type"])

Subscriptions survive a lost connection (they resubscribe with backoff). Pub/sub is
fire-and-forget: a message published while a subscriber is reconnecting is not delivered to it.
State lives in Redis (the job record); events are notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import weakref
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import anyio
import redis
import redis.asyncio
import redis.asyncio.cluster

from taskforge.driver.connection import AsyncRedis, async_client
from taskforge.driver.subscribe import resubscribing
from taskforge.errors import BrokerError, SerializationError
from taskforge.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "JOB_UPDATES",
    "SYSTEM_ALERTS",
    "WORKFLOW_EVENTS",
    "RedisClient",
    "configure_redis_client",
    "get_redis_client",
    "tenant_channel",
]

#: All workflow events.
WORKFLOW_EVENTS = "workflow:events"
#: System-wide alerts.
SYSTEM_ALERTS = "system:alerts"
#: Job status updates (every transition taskforge's scripts make is published here).
JOB_UPDATES = "job:updates"


def tenant_channel(tenant_id: str | int) -> str:
    """The tenant's own workflow channel: ``workflow:events:tenant:{tenant_id}``."""
    return f"{WORKFLOW_EVENTS}:tenant:{tenant_id}"


class RedisClient:
    """Publish and subscribe to JSON events; check Redis health.

    Creating it connects to nothing; each event loop gets its own connection pool on first use
    (``settings`` defaults to ``Settings.from_env()``, the guide's ``REDIS_*`` variables).
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings if settings is not None else Settings.from_env()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncRedis] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def client(self) -> AsyncRedis:
        """The redis-py asyncio client of the running event loop, for anything else."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = async_client(self.settings)
        return client

    async def publish(self, channel: str, data: Mapping[str, Any]) -> int:
        """Publish ``data`` as JSON on ``channel``; returns how many subscribers received it.

        Raises:
            SerializationError: ``data`` is not JSON data.
            BrokerError: Redis could not be reached.
        """
        try:
            payload = json.dumps(data, separators=(",", ":"), default=_iso)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot publish {type(data).__name__}: {exc}") from exc
        try:
            return int(await self.client.publish(channel, payload))
        except redis.RedisError as exc:
            raise BrokerError(f"publish on {channel!r} failed: {exc}") from exc

    async def publish_workflow_event(
        self, event: Mapping[str, Any], tenant_id: str | int | None = None
    ) -> int:
        """Publish on ``workflow:events`` and, for a tenant, on its own channel too.

        ``tenant_id`` defaults to ``event["tenant_id"]``. Returns the receivers of both.
        """
        tenant = tenant_id if tenant_id is not None else event.get("tenant_id")
        receivers = await self.publish(WORKFLOW_EVENTS, event)
        if tenant is not None:
            receivers += await self.publish(tenant_channel(tenant), event)
        return receivers

    def subscribe(
        self, *channels: str, ready: anyio.Event | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Yield ``{"channel": ..., "data": dict}`` for each JSON object published on
        ``channels``, resubscribing after a lost connection.

        ``ready`` is set once the subscription is confirmed (the first time). Messages that are
        not JSON objects are skipped with a warning.
        """
        return self._listen(channels, (), ready)

    def psubscribe(
        self, *patterns: str, ready: anyio.Event | None = None
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Like :meth:`subscribe` for glob patterns (``"workflow:events:tenant:*"``); each
        message also carries the ``"pattern"`` it matched."""
        return self._listen((), patterns, ready)

    async def _listen(
        self, channels: tuple[str, ...], patterns: tuple[str, ...], ready: anyio.Event | None
    ) -> AsyncGenerator[dict[str, Any], None]:
        messages = resubscribing(lambda: self.client, channels, patterns, ready=ready, log=log)
        async with contextlib.aclosing(messages):
            async for message in messages:
                event = _event(message)
                if event is not None:
                    yield event

    async def health_check(self) -> dict[str, Any]:
        """The guide's health dict (``status, connected, latency_ms, version, used_memory,
        connected_clients, uptime_seconds``) plus live workers, queue depths and warnings;
        never raises.

        The one report ``taskforge health --json``, ``Admin.health()`` and the dashboard give
        (:func:`taskforge.health.health_check`, every key of
        :data:`~taskforge.health.HEALTH_KEYS`), on this client's connection.
        """
        # Imported on call: the report reads queue depths and workers (the queue protocol),
        # which the pub/sub client itself never needs; importing it stays cheap and layered.
        from taskforge.health import health_check
        from taskforge.protocol.brokers import AsyncBroker

        return await health_check(AsyncBroker(self.settings, self.client))

    async def aclose(self) -> None:
        """Close the running event loop's connection pool."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def _iso(value: Any) -> Any:
    # The guide publishes datetime.utcnow().isoformat(); accept datetimes as they are, too.
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _event(message: Mapping[str, Any]) -> dict[str, Any] | None:
    if message.get("type") not in ("message", "pmessage"):
        return None
    try:
        data = json.loads(message["data"])
    except (TypeError, ValueError):
        data = None
    if not isinstance(data, dict):
        log.warning(
            "pub/sub: skipped a message on %s that is not a JSON object", message["channel"]
        )
        return None
    event = {"channel": message["channel"], "data": data}
    if message["type"] == "pmessage":
        event["pattern"] = message["pattern"]
    return event


_default_lock = threading.Lock()
_default: RedisClient | None = None


def configure_redis_client(client: RedisClient | Settings | None = None) -> RedisClient:
    """Replace the client :func:`get_redis_client` returns (``None``: from the environment)."""
    global _default
    if not isinstance(client, RedisClient):
        client = RedisClient(client)
    with _default_lock:
        _default = client
    return client


async def get_redis_client() -> RedisClient:
    """The guide's ``redis = await get_redis_client()``: the process-wide client."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RedisClient()
        return _default
