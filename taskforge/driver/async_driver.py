"""The asyncio driver: performs the core's steps over redis-py's asyncio client.

Used by the worker and the async producer API. Everything a request sends is decided by
:class:`~taskforge.driver.core.Core`; this module only performs the steps (with ``await``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis
import redis.asyncio
import redis.asyncio.cluster

from taskforge.driver.connection import AsyncRedis, async_client, async_same_node
from taskforge.driver.core import Core, Exec, Invoke, NodeOf, OnPrimaries, Step, wrap_error
from taskforge.driver.hot_lane import AsyncHotLane
from taskforge.driver.packing import packing_in_c
from taskforge.driver.requests import Op, Request, ScriptCall, Scripts, T
from taskforge.driver.subscribe import resubscribing
from taskforge.settings import Settings

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.broker")


class AsyncDriver:
    """Runs operations (:data:`~taskforge.driver.requests.Op`) over an asyncio client."""

    def __init__(self, settings: Settings, scripts: Scripts, client: AsyncRedis | None = None):
        self.settings = settings
        self.scripts = scripts
        self.client = client if client is not None else async_client(settings)
        plain = type(self.client) is redis.asyncio.Redis and not settings.is_memory
        if isinstance(self.client, redis.asyncio.Redis) and not settings.is_memory:
            packing_in_c(self.client)  # a worker packs ~8 script arguments per job
        self._hot = (
            AsyncHotLane(self.client, retry_timeouts=settings.retry_on_timeout)  # type: ignore[arg-type]
            if plain
            else None
        )
        self._core = Core(settings, self.client, scripts, hot=self._hot is not None)

    async def run(self, op: Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            request = next(op)
            while True:
                request = op.send(await self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            raise wrap_error(exc, self.settings) from exc

    async def _send(self, request: Request) -> Any:
        command = self._core.hot(request)
        if command is None:
            plan = self._core.plan(request)
        else:  # the hot lane first, without a plan: most of a .delay() is this call
            assert self._hot is not None and isinstance(request, ScriptCall)
            try:
                sent, reply = await self._hot.call(command)
            except redis.exceptions.NoScriptError:
                sent, reply = False, None  # the registered script loads it
            if sent:
                return reply
            plan = self._core.registered(request)
        try:
            step = next(plan)
            while True:
                try:
                    reply = await self._perform(step)
                except redis.RedisError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(reply)
        except StopIteration as done:
            return done.value

    async def _perform(self, step: Step) -> Any:
        client = self.client
        if isinstance(step, Invoke):
            return await step.script(keys=step.keys, args=step.args)
        if isinstance(step, Exec):
            return await client.execute_command(*step.args, **step.target)
        if isinstance(step, NodeOf):
            return await async_same_node(client, step.key)
        if isinstance(step, OnPrimaries):
            if not isinstance(client, redis.asyncio.cluster.RedisCluster):
                return {"": await client.execute_command(*step.args)}  # type: ignore[no-untyped-call]
            await client.initialize()  # the slot map is read lazily: it may not be yet
            return {
                node.name: await client.execute_command(*step.args, target_nodes=node)
                for node in client.get_primaries()
            }
        pipe = client.pipeline(transaction=False)
        for args, options in step.commands:
            pipe.execute_command(*args, **options)
        return await pipe.execute()

    async def subscribe(
        self, *channels: str, ready: anyio.Event | None = None
    ) -> AsyncIterator[tuple[str, str]]:
        """Yield ``(channel, data)`` from pub/sub, resubscribing after a lost connection.

        ``ready`` is set once the first subscription is confirmed. Pub/sub is fire-and-forget:
        messages sent while reconnecting are missed.
        """
        messages = resubscribing(lambda: self.client, channels, ready=ready, log=log)
        async with contextlib.aclosing(messages):
            async for message in messages:
                if message["type"] == "message":
                    yield message["channel"], message["data"]

    async def aclose(self) -> None:
        """Release the connection pool."""
        if self._hot is not None:
            await self._hot.aclose()
        await self.client.aclose()


__all__ = ["AsyncDriver"]
