"""A fault-injecting TCP proxy between taskforge and a private redis-server (loopback only).

It runs an asyncio loop in a daemon thread and forwards bytes both ways, unless told to:

* ``latency_s``: deliver every chunk that much later (a latency spike; chunks keep their order
  and do not queue behind each other's delay);
* :meth:`drop_connections`: close every open connection at once (a reset: both ends see EOF);
* :meth:`partition`: a black hole. Nothing passes either way and nothing is closed: connections
  (and new ones, which are accepted) just hang, as behind a dead switch. :meth:`heal` ends it;
  connections that were open during it are then closed, as a NAT or firewall that forgot them
  would, and new ones flow;
* :meth:`half_open`: requests still reach Redis, replies never come back and the connection
  never closes (a peer that died without a FIN, seen from the other side); :meth:`heal` as above;
* :meth:`lose_replies`: the next ``n`` replies are swallowed and their connection closed: the
  command ran in Redis, the client never hears so (the ambiguous write).

Every wait is bounded: :meth:`close` stops the loop and closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.support.redis_server import free_port

_BLOCK_STEP_S = 0.01


def _deliver(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    if not writer.is_closing():
        writer.write(chunk)


@dataclass(eq=False)
class _Link:
    """One proxied connection: the client's socket and ours to Redis."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tainted: bool = False  # open during a partition / half-open spell: closed at heal


@dataclass
class FaultProxy:
    """Listen on ``127.0.0.1:port``, forward to ``127.0.0.1:target_port``, inject faults."""

    target_port: int
    port: int = field(default_factory=free_port)
    latency_s: float = 0.0
    _links: set[_Link] = field(default_factory=set)
    _blocked: bool = False
    _half_open: bool = False
    _lose: int = 0
    lost_replies: int = 0
    connections: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    def url(self, db: int = 0) -> str:
        """``redis://127.0.0.1:<proxy port>/db``."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FaultProxy:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", self.port)
            )
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def close(self) -> None:
        """Stop listening and close every connection."""
        if self._loop is None:
            return
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- faults

    def drop_connections(self) -> int:
        """Close every open connection (both ends); returns how many."""
        return int(self._call(self._close_links(lambda link: True)))

    def partition(self) -> None:
        """Black hole: nothing passes, nothing closes, until :meth:`heal`."""
        self._blocked = True
        self._taint()

    def half_open(self) -> None:
        """Requests pass, replies vanish, nothing closes, until :meth:`heal`."""
        self._half_open = True
        self._taint()

    def heal(self) -> int:
        """End a partition or half-open spell; close the connections it held. Returns how many."""
        self._blocked = self._half_open = False
        return int(self._call(self._close_links(lambda link: link.tainted)))

    def lose_replies(self, n: int = 1) -> None:
        """Swallow the next ``n`` replies (one per connection) and close their connections."""
        self._lose += n

    @contextlib.contextmanager
    def partitioned(self) -> Iterator[None]:
        """``with proxy.partitioned(): ...`` partition for the block, heal after it."""
        self.partition()
        try:
            yield
        finally:
            self.heal()

    # ---------------------------------------------------------------- the loop's side

    def _call(self, coro: object) -> object:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        return future.result(10)

    def _taint(self) -> None:
        for link in list(self._links):
            link.tainted = True

    async def _accept(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            s_reader, s_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            c_writer.close()
            return
        link = _Link(c_writer, s_writer, tainted=self._blocked or self._half_open)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(c_reader, s_writer, link, upstream=True),
                self._pipe(s_reader, c_writer, link, upstream=False),
            )
        finally:
            self._links.discard(link)
            for writer in (c_writer, s_writer):
                writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link, *,
        upstream: bool,
    ) -> None:  # fmt: skip
        try:
            while chunk := await reader.read(65536):
                while self._blocked:  # hold it, as a dead switch would
                    await asyncio.sleep(_BLOCK_STEP_S)
                if not upstream and self._half_open:
                    continue  # the reply vanishes; the connection stays open
                if not upstream and self._lose > 0:
                    self._lose -= 1
                    self.lost_replies += 1
                    break  # the command ran; its reply never arrives
                if self.latency_s:
                    # Each chunk in flight on its own clock, as on a slow link.
                    asyncio.get_running_loop().call_later(self.latency_s, _deliver, writer, chunk)
                    continue
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end both, so neither end waits on a half of a dead link.
            link.client.close()
            link.server.close()

    async def _close_links(self, which: object) -> int:
        chosen = [link for link in list(self._links) if which(link)]  # type: ignore[operator]
        for link in chosen:
            link.client.close()
            link.server.close()
        return len(chosen)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_links(lambda link: True)
        # End the connections' tasks too, so none is destroyed pending when the loop stops.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
