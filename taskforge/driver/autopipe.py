"""Auto-pipelining for the asyncio client lent to task bodies (``current_job().redis``).

With ``concurrency=100`` a worker runs up to a hundred bodies at once, and each ``await
client.incr(key)`` in redis-py checks out a pooled connection, sends its own packet, arms a read
timer and waits alone for its reply. :class:`AutoPipelinedRedis` queues the commands the bodies
issue in the same event-loop turn instead; one flusher task writes them on one connection in one
write and reads their replies in order, handing each caller the reply through redis-py's own
response callbacks, so every call returns what ``redis.asyncio.Redis`` would.

Commands that cannot share a connection with others take the ordinary pooled path: blocking
ones, transactions, pub/sub, connection state (see :data:`OWN_CONNECTION`), a client pinned to
one connection, and any call whose options the batch cannot honour. ``pipeline()``, ``pubsub()``
and ``monitor()`` make their own objects and never come here.

Errors: a reply that is an error raises in its own caller only. When the connection fails, every
command of the batch in flight gets that ``ConnectionError``/``TimeoutError`` (nothing is retried:
a write may have run), and the next batch connects again. A caller cancelled while its command is
in flight has its reply read and dropped, so the replies after it stay paired with their callers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Commands that must own their connection while they run: they block it, change its state or
#: turn it into something other than request/reply.
OWN_CONNECTION = frozenset(
    {
        # blocking
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "WAIT", "WAITAOF", "DEBUG",
        # transactions
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        # pub/sub and monitor
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
        "MONITOR",
        # connection state
        "AUTH", "HELLO", "SELECT", "CLIENT", "RESET", "QUIT", "READONLY", "READWRITE", "ASKING",
        "HIMPORT", "SYNC", "PSYNC", "REPLICAOF", "SLAVEOF", "FAILOVER", "SHUTDOWN",
    }
)  # fmt: skip

#: Stream reads block only with BLOCK among their arguments.
_BLOCK_IF_ASKED = frozenset({"XREAD", "XREADGROUP"})

_BLOCK = ("BLOCK", b"BLOCK")

#: The most commands one write carries; the rest wait for the next batch.
MAX_BATCH = 1000

_Entry = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


def shares_connection(args: tuple[Any, ...]) -> bool:
    """Whether the command ``args`` may ride in a batch with other callers' commands."""
    first = args[0]
    name = (first.decode() if isinstance(first, bytes) else str(first)).split(" ", 1)[0].upper()
    if name in OWN_CONNECTION:
        return False
    if name in _BLOCK_IF_ASKED:
        return not any(isinstance(a, (str, bytes)) and a.upper() in _BLOCK for a in args)
    return True


class AutoPipelinedRedis(redis.asyncio.Redis):
    """A ``redis.asyncio.Redis`` whose plain commands from concurrent callers are batched.

    Made by :meth:`adopt` from a client whose pool and settings it keeps; its flusher task starts
    on the first batched command and ends with :meth:`aclose`.
    """

    _pending: deque[_Entry]
    _wake: asyncio.Event
    _flusher: asyncio.Task[None] | None
    _conn: Any

    @classmethod
    def adopt(cls, client: redis.asyncio.Redis) -> AutoPipelinedRedis:
        """``client`` itself, turned into an auto-pipelined client (same pool, same options)."""
        client.__class__ = cls
        assert isinstance(client, AutoPipelinedRedis)
        client._pending = deque()
        client._wake = asyncio.Event()
        client._flusher = None
        client._conn = None
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Batch ``args`` with the other callers' commands of this turn, or send it alone when
        it must own a connection (see the module's docstring)."""
        if self.single_connection_client or not shares_connection(args):
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((args, options, future))
        self._wake.set()
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())
        return await future

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Stop the flusher (commands still queued get a ``ConnectionError``), then close."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await super().aclose(close_connection_pool)

    async def _flush_forever(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._pending:
                    await self._flush(self._take())
        except asyncio.CancelledError:
            self._fail(list(self._pending), _closed())
            self._pending.clear()
            raise
        finally:
            conn, self._conn = self._conn, None
            if conn is not None:
                await self.connection_pool.release(conn)

    def _take(self) -> list[_Entry]:
        batch: list[_Entry] = []
        while self._pending and len(batch) < MAX_BATCH:
            entry = self._pending.popleft()
            if not entry[2].done():  # a caller cancelled before its turn: never sent
                batch.append(entry)
        return batch

    async def _flush(self, batch: list[_Entry]) -> None:
        """Write ``batch`` in one write and hand each reply to its caller."""
        if not batch:
            return
        try:
            conn = await self._connection()
            await conn.send_packed_command(conn.pack_commands([e[0] for e in batch]), False)
            await self._hand_out(conn, batch)
        except asyncio.CancelledError:
            # Cancelled mid-batch: the replies still unread would pair with the next batch.
            self._fail(batch, _closed())
            await self._drop_connection()
            raise
        except Exception as exc:
            # The connection failed (or, a bug here): every caller still waiting gets the error,
            # and the next batch connects again rather than read replies out of step.
            self._fail(batch, exc)
            await self._drop_connection()

    async def _hand_out(self, conn: Any, batch: list[_Entry]) -> None:
        """Read ``batch``'s replies in order, each through redis-py's response callback."""
        for args, options, future in batch:
            try:
                reply = await self.parse_response(conn, args[0], **options)
            except (RedisConnectionError, RedisTimeoutError, OSError):
                raise  # the connection is gone: the whole batch fails
            except Exception as exc:
                # The reply was read whole: an error reply, or its callback's error, is this
                # caller's alone, and the replies after it stay in step.
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(reply)

    async def _connection(self) -> Any:
        conn = self._conn
        if conn is None:
            conn = self._conn = await self.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        elif not conn.is_connected or conn._reader.at_eof():
            # Closed while idle (a server's `timeout`, a restart): the pool would not hand out
            # such a connection either, and a command written to it would fail for nothing.
            await conn.disconnect(nowait=True)
            await conn.connect()
        return conn

    async def _drop_connection(self) -> None:
        conn = self._conn
        if conn is not None:
            await conn.disconnect(nowait=True)

    @staticmethod
    def _fail(batch: list[_Entry], exc: BaseException) -> None:
        """Fail the callers of ``batch`` still waiting, each with its own copy of ``exc``."""
        for _, _, future in batch:
            if not future.done():
                copy = type(exc)(*exc.args) if isinstance(exc, RedisError) else exc
                future.set_exception(copy)


def _closed() -> RedisConnectionError:
    return RedisConnectionError("the lent Redis client was closed with this command unanswered")


__all__ = ["MAX_BATCH", "OWN_CONNECTION", "AutoPipelinedRedis", "shares_connection"]
