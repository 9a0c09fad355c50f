"""The hot lane: one connection held out of the pool for a producer's per-job script call.

redis-py's per-command path (pool checkout with its ``can_read`` poll and locks, the retry
wrapper, observability hooks, ``Script`` with its sha lookup) costs several times the Python
work of sending the packed command and reading its reply on a connection in hand; for a
``.delay()``, which is one script call, that path was most of the client's CPU. A caller that
finds the lane busy, a broken connection (then dropped), or (sync) a forked process takes the
ordinary path, which keeps its retries: a call that fails here is sent again there, as
redis-py's own retry would send it again. :class:`HotLane` (threads) and
:class:`AsyncHotLane` (tasks) differ only in how they wait and hand a connection back; what a
failure means is decided once, by :func:`_falls_back`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any

import redis
import redis.asyncio

from taskforge.driver.packing import pack as _pack
from taskforge.driver.requests import Arg


def _falls_back(exc: BaseException, retry_timeouts: bool) -> bool:
    """After ``exc`` on the lane's connection (already dropped): whether the caller should send
    the call on the ordinary path (True), or the error is the caller's (False)."""
    if not isinstance(exc, redis.RedisError | OSError):
        return False  # interrupted or cancelled mid-call: the caller's error
    # As the pooled path would: no second wait of a whole timeout unless retries are on.
    return not (isinstance(exc, redis.TimeoutError) and not retry_timeouts)


class HotLane:
    """One connection held for script calls, used by one thread at a time."""

    def __init__(self, client: redis.Redis, *, retry_timeouts: bool):
        self._pool = client.connection_pool
        self._retry_timeouts = retry_timeouts
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def call(self, command: tuple[Arg | bytes, ...]) -> tuple[bool, Any]:
        """``(True, reply)``, or ``(False, None)`` when the caller must use the pool instead.

        Raises:
            redis.ResponseError: Redis answered with an error (``NOSCRIPT`` included); the
                connection stays usable.
        """
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            conn = self._connection()
            try:
                conn.send_packed_command(_pack(conn, command))
                return True, conn.read_response()
            except redis.ResponseError:
                raise
            except BaseException as exc:  # the connection's state is unknown
                self._drop()
                if _falls_back(exc, self._retry_timeouts):
                    return False, None
                raise
        finally:
            self._lock.release()

    def _connection(self) -> Any:
        if self._conn is not None and self._pid != os.getpid():
            self._conn = None  # the parent's socket: never touch it in a forked child
        if self._conn is None:
            self._conn, self._pid = self._pool.get_connection(), os.getpid()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self._pool.release(conn)

    def close(self) -> None:
        """Hand the connection back (the pool is about to be closed)."""
        with self._lock:
            self._drop()


class AsyncHotLane:
    """:class:`HotLane` for the asyncio client, used by one task at a time.

    A task cancelled while its call is out leaves a reply unread on the connection: the lane
    forgets that connection at once and a separate task disconnects it and hands it back.
    """

    def __init__(self, client: redis.asyncio.Redis, *, retry_timeouts: bool):
        self._pool = client.connection_pool
        self._retry_timeouts = retry_timeouts
        self._busy = False
        self._conn: Any = None
        self._discarding: set[asyncio.Task[None]] = set()

    async def call(self, command: tuple[Arg | bytes, ...]) -> tuple[bool, Any]:
        """``(True, reply)``, or ``(False, None)``: see :meth:`HotLane.call`."""
        if self._busy:
            return False, None
        self._busy = True
        try:
            if self._conn is None:
                self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            conn = self._conn
            try:
                await conn.send_packed_command(_pack(conn, command))
                return True, await conn.read_response()
            except redis.ResponseError:
                raise
            except BaseException as exc:  # the connection's state is unknown
                self._discard()
                if _falls_back(exc, self._retry_timeouts):
                    return False, None
                raise
        finally:
            self._busy = False

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self._hand_back(conn))
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)

    async def _hand_back(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect()
        await self._pool.release(conn)

    async def aclose(self) -> None:
        """Hand the connection back (the pool is about to be closed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


__all__ = ["AsyncHotLane", "HotLane"]
