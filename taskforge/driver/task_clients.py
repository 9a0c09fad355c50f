"""The Redis clients a worker lends its task bodies: ``current_job().redis`` and ``.sync_redis``.

A task that makes its own ``redis.asyncio.Redis`` pays redis-py's pure-Python packing on every
command and opens a pool per process it was imported in. :class:`TaskClients` makes each client
once per worker (or pool child), on its first use, from the worker's own settings and client
factory, so a Cluster or Sentinel URL, TLS, auth and timeouts apply as they do to the worker's
connections; the asyncio client packs with hiredis as the worker's do, and batches the commands
that concurrent bodies issue in one event-loop turn into one write (:mod:`.autopipe`; not on a
Cluster, whose client stays plain). Its pools are the
body's own: a task that holds a connection (a blocking pop, a long pipeline) never starves the
worker's fetches and outcome writes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import redis.asyncio

from taskforge.driver.autopipe import AutoPipelinedRedis
from taskforge.driver.connection import AsyncRedis, SyncRedis, async_client, sync_client
from taskforge.driver.packing import packing_in_c
from taskforge.errors import TaskforgeError
from taskforge.settings import Settings


class TaskClients:
    """One asyncio and one blocking client for the task bodies of one worker, each made on
    first use and closed by :meth:`aclose` (or :meth:`close`) when the worker ends.

    ``concurrency`` sizes the pools: at least that many connections and one (each job may hold
    one while the worker runs ``concurrency`` jobs, and the batches hold one), or the settings'
    ``max_connections`` if more.
    """

    def __init__(self, settings: Settings, *, concurrency: int = 1):
        wanted = concurrency + 1  # one more: the asyncio client's batches hold a connection
        if wanted > settings.max_connections:
            settings = settings.model_copy(update={"max_connections": wanted})
        self.settings = settings
        self._async: AsyncRedis | None = None
        self._sync: SyncRedis | None = None
        self._lock = threading.Lock()  # sync tasks run in several threads at once

    def asyncio_client(self) -> AsyncRedis:
        """The asyncio client, bound to the worker's event loop.

        Raises:
            TaskforgeError: called off the event loop (from a sync task's thread).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise TaskforgeError(
                "current_job().redis is the asyncio client, for async tasks on the worker's "
                "event loop; a sync task uses current_job().sync_redis"
            ) from None
        client = self._async
        if client is None:
            client = self._async = async_client(self.settings)
            if isinstance(client, redis.asyncio.Redis) and not self.settings.is_memory:
                packing_in_c(client)
                client = self._async = AutoPipelinedRedis.adopt(client)
            elif isinstance(client, redis.asyncio.RedisCluster):
                _initialize_first(client)
        return client

    def sync_client(self) -> SyncRedis:
        """The blocking client (thread-safe: its pool hands each thread its own connection)."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = sync_client(self.settings)
                client = self._sync
        return client

    async def aclose(self) -> None:
        """Close both clients (those made); later use makes new ones."""
        client, self._async = self._async, None
        if client is not None:
            await client.aclose()
        self.close()

    def close(self) -> None:
        """Close the blocking client (a pool child's end; the asyncio one needs :meth:`aclose`)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()


def _initialize_first(client: redis.asyncio.RedisCluster) -> None:
    """Make ``client`` learn the cluster's slots once, before its first command, whoever sends it.

    redis-py's asyncio cluster client initializes itself on first use; when several bodies send
    their first commands at once, some of those commands were applied twice (measured: 4 of 240
    fresh-key ``INCR``s read 2, none once the client was initialized first). So every command
    waits, once, for one ``initialize()`` under a lock.
    """
    lock = asyncio.Lock()
    execute = client.execute_command
    ready = False

    async def execute_command(*args: Any, **kwargs: Any) -> Any:
        nonlocal ready
        if not ready:
            async with lock:
                if not ready:
                    await client.initialize()
                    ready = True
        return await execute(*args, **kwargs)

    client.execute_command = execute_command  # type: ignore[method-assign]


__all__ = ["TaskClients"]
