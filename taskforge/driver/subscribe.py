"""The one reconnecting pub/sub loop: the worker's control channel, ``taskforge events`` and the
guide's :class:`~taskforge.pubsub.RedisClient` all listen through it.

Pub/sub is fire-and-forget: messages published while the loop reconnects are missed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import anyio
import redis

from taskforge.driver.connection import AsyncRedis

#: The longest wait between two resubscription attempts, s.
MAX_BACKOFF_S = 2.0

# The logger keeps its name from before the package layout: logging configs name it.
_log = logging.getLogger("taskforge.broker")


async def resubscribing(
    client: Callable[[], AsyncRedis],
    channels: Sequence[str] = (),
    patterns: Sequence[str] = (),
    *,
    ready: anyio.Event | None = None,
    log: logging.Logger = _log,
) -> AsyncGenerator[dict[str, Any], None]:
    """Yield redis-py's pub/sub messages (subscribe confirmations left out) on ``channels`` and
    ``patterns``, subscribing again with backoff after a lost connection.

    ``client`` is asked for the client at each (re)subscription. ``ready`` is set once a
    subscription is confirmed. Close the generator (``contextlib.aclosing``) to unsubscribe at
    once.
    """
    delay_s = 0.1
    while True:
        pubsub = client().pubsub(ignore_subscribe_messages=True)
        try:
            if channels:
                await pubsub.subscribe(*channels)
            if patterns:
                await pubsub.psubscribe(*patterns)
            if ready is not None:
                ready.set()
            delay_s = 0.1
            async for message in pubsub.listen():
                yield message
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("pub/sub connection lost (%s); resubscribing in %.1fs", exc, delay_s)
        finally:
            # Close before backing off: redis-py may already have reconnected and
            # resubscribed this connection, which would then swallow messages unread.
            with anyio.CancelScope(shield=True):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        await anyio.sleep(delay_s)
        delay_s = min(delay_s * 2, MAX_BACKOFF_S)


__all__ = ["MAX_BACKOFF_S", "resubscribing"]
