"""The blocking driver: performs the core's steps over redis-py's blocking client.

Used by the producer API and the CLI. Everything a request sends is decided by
:class:`~taskforge.driver.core.Core`; this module only performs the steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
import redis.cluster

from taskforge.driver.connection import SyncRedis, same_node, sync_client
from taskforge.driver.core import Core, Exec, Invoke, NodeOf, OnPrimaries, Step, wrap_error
from taskforge.driver.hot_lane import HotLane
from taskforge.driver.overlapped import Overlapped
from taskforge.driver.requests import Op, Request, ScriptCall, Scripts, T
from taskforge.settings import Settings


class SyncDriver:
    """Runs operations (:data:`~taskforge.driver.requests.Op`) over a blocking client."""

    def __init__(self, settings: Settings, scripts: Scripts, client: SyncRedis | None = None):
        self.settings = settings
        self.scripts = scripts
        self.client = client if client is not None else sync_client(settings)
        # Only a plain client of one server: a cluster routes per key, a Sentinel pool follows
        # failovers per checkout, the embedded server has no sockets.
        plain = type(self.client) is redis.Redis and not settings.is_memory
        self._hot = (
            HotLane(self.client, retry_timeouts=settings.retry_on_timeout)  # type: ignore[arg-type]
            if plain
            else None
        )
        self._core = Core(settings, self.client, scripts, hot=self._hot is not None)

    def run(self, op: Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            request = next(op)
            while True:
                request = op.send(self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            raise wrap_error(exc, self.settings) from exc

    def run_overlapped(self, ops: Iterable[Op[T]]) -> list[T]:
        """Drive operations of one script call each, Python and Redis working at once.

        Each operation's call is written to the socket as soon as ``ops`` yields it, and its
        reply is read only after the next operation has been built and sent: the work ``ops``
        does to build an operation (encoding a chunk of jobs) overlaps Redis running the
        previous one. Results come back in order. An operation that starts with anything but a
        script call, or a deployment where one connection cannot carry them all (a cluster, the
        embedded server), runs one at a time. Calls whose replies a broken connection lost are
        sent again, so the operations must be idempotent (enqueue is: an id is written once).
        """
        if not self._core.one_connection:
            return [self.run(op) for op in ops]
        overlap: Overlapped[T] | None = None
        try:
            overlap = Overlapped(self, self._core)
            for op in ops:
                overlap.add(op)
            overlap.flush()
        except redis.RedisError as exc:
            raise wrap_error(exc, self.settings) from exc
        finally:
            if overlap is not None:
                overlap.close()
        return overlap.results

    def finish(self, op: Op[T], reply: Any) -> T:
        """Drive ``op``, whose first request was answered with ``reply``, to its result."""
        try:
            request = op.send(reply)
            while True:
                request = op.send(self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def send(self, request: Request) -> Any:
        """Send one request; its raw reply (redis-py's errors unwrapped)."""
        return self._send(request)

    def _send(self, request: Request) -> Any:
        command = self._core.hot(request)
        if command is None:
            plan = self._core.plan(request)
        else:  # the hot lane first, without a plan: most of a .delay() is this call
            assert self._hot is not None and isinstance(request, ScriptCall)
            try:
                sent, reply = self._hot.call(command)
            except redis.exceptions.NoScriptError:
                sent, reply = False, None  # the registered script loads it
            if sent:
                return reply
            plan = self._core.registered(request)
        try:
            step = next(plan)
            while True:
                try:
                    reply = self._perform(step)
                except redis.RedisError as exc:
                    step = plan.throw(exc)
                else:
                    step = plan.send(reply)
        except StopIteration as done:
            return done.value

    def _perform(self, step: Step) -> Any:
        client = self.client
        if isinstance(step, Invoke):
            return step.script(keys=step.keys, args=step.args)
        if isinstance(step, Exec):
            return client.execute_command(*step.args, **step.target)  # type: ignore[no-untyped-call]
        if isinstance(step, NodeOf):
            return same_node(client, step.key)
        if isinstance(step, OnPrimaries):
            if not isinstance(client, redis.cluster.RedisCluster):
                return {"": client.execute_command(*step.args)}  # type: ignore[no-untyped-call]
            return {
                node.name: client.execute_command(*step.args, target_nodes=node)  # type: ignore[no-untyped-call]
                for node in client.get_primaries()  # type: ignore[no-untyped-call]
            }
        pipe = client.pipeline(transaction=False)
        for args, options in step.commands:
            pipe.execute_command(*args, **options)
        return pipe.execute()

    def close(self) -> None:
        """Release the connection pool."""
        if self._hot is not None:
            self._hot.close()
        self.client.close()


__all__ = ["SyncDriver"]
