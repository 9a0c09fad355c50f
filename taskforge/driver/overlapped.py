"""The overlapped pipeline of :meth:`~taskforge.driver.sync_driver.SyncDriver.run_overlapped`:
one connection, script calls written as they are built, replies read one call behind.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Generic

import redis

from taskforge.driver.core import Core
from taskforge.driver.requests import Op, ScriptCall, T

if TYPE_CHECKING:
    from taskforge.driver.sync_driver import SyncDriver


class Overlapped(Generic[T]):
    """:meth:`SyncDriver.run_overlapped`'s state: one connection, the calls sent but unread."""

    def __init__(self, driver: SyncDriver, core: Core):
        self.driver = driver
        self.core = core
        self.pool: Any = driver.client.connection_pool  # type: ignore[union-attr]  # not a cluster
        self.conn: Any = self.pool.get_connection()
        self.in_flight: deque[tuple[Op[T], ScriptCall]] = deque()
        self.results: list[T] = []
        self.loaded: set[str] = set()

    def add(self, op: Op[T]) -> None:
        """Send ``op``'s first request (reading an earlier reply when one is pending)."""
        request = next(op)
        if not isinstance(request, ScriptCall):
            self.flush()
            self.results.append(self.driver.finish(op, self.driver.send(request)))
            return
        self.in_flight.append((op, request))
        if self.conn is None:
            self.flush()
            return
        try:
            if len(self.in_flight) == 1 and request.name not in self.loaded:
                # Loaded up front, so no call after the first can find it missing while an
                # earlier one is sent again (which would put a later chunk first).
                self.conn.send_command("SCRIPT", "LOAD", self.driver.scripts.sources[request.name])
                self.conn.read_response()
                self.loaded.add(request.name)
            # redis-py's health check reads a reply: only with none pending, or it takes ours.
            self.conn.send_command(
                *self.core.evalsha(request), check_health=len(self.in_flight) == 1
            )
        except (redis.ConnectionError, redis.TimeoutError):
            self._broken()
            return
        if len(self.in_flight) > 1:  # keep one call running in Redis while the next is built
            self._receive()

    def flush(self) -> None:
        """Read every pending reply (sending again the calls a lost connection dropped)."""
        while self.in_flight:
            if self.conn is None:  # its reply was lost with the connection: send it again
                op, request = self.in_flight.popleft()
                self.results.append(self.driver.finish(op, self.driver.send(request)))
            else:
                self._receive()

    def close(self) -> None:
        """Hand the connection back (disconnected when replies are left unread)."""
        if self.conn is not None:
            if self.in_flight:  # unread replies: nobody else may read them
                self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None

    def _receive(self) -> None:
        op, _ = self.in_flight[0]
        try:
            reply = self.conn.read_response()
        except redis.exceptions.NoScriptError:
            self._reload()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            self._broken()
            return
        self.in_flight.popleft()
        self.results.append(self.driver.finish(op, reply))

    def _reload(self) -> None:
        # The server lost its scripts (a restart, SCRIPT FLUSH): the oldest call ran nothing,
        # and neither did the ones behind it, unless another client loaded the script in the
        # meantime. Read them all before sending any again, so the refused ones go in order.
        replies: list[Any] = [_REFUSED]
        broken = False
        for _ in range(len(self.in_flight) - 1):
            try:
                replies.append(self.conn.read_response())
            except redis.exceptions.NoScriptError:
                replies.append(_REFUSED)
            except (redis.ConnectionError, redis.TimeoutError):
                broken = True  # the rest are sent again: enqueue is idempotent
                break
        if broken:
            self._drop()
        for reply in replies + [_REFUSED] * (len(self.in_flight) - len(replies)):
            op, request = self.in_flight.popleft()
            if reply is _REFUSED:
                reply = self.driver.send(request)  # loads the script, then runs the call
            self.results.append(self.driver.finish(op, reply))

    def _broken(self) -> None:
        self._drop()
        self.flush()

    def _drop(self) -> None:
        self.conn.disconnect()
        self.pool.release(self.conn)
        self.conn = None


_REFUSED = object()

__all__ = ["Overlapped"]
