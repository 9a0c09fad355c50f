"""A process pool for sync tasks (``taskforge worker --pool process``).

The worker's event loop still fetches, renews leases and writes outcomes; only the call of a
sync task's function moves into a child process, so a CPU-bound task gets a core of its own and
a runaway one can be killed. Each child serves one job at a time over its own pipe.

Children start from the ``forkserver`` context: a small server process, started once, imports
the task modules and forks a child per request. Forking the worker itself is unsafe (it has an
event loop, threads and open Redis sockets, which a fork would copy half-way); ``spawn`` is safe
but starts a fresh interpreter that re-imports everything, about 100x slower, which a pool that
replaces killed and recycled children pays again and again. Where ``forkserver`` does not exist
(Windows) the pool uses ``spawn``.

A child that dies mid-job (SIGKILL, the OOM killer, a crash in C code) closes its pipe; the
attempt fails with :class:`~taskforge.errors.WorkerLostError` and the job follows its retry
policy. A timed-out job's child gets SIGUSR2, a cancelled job's SIGUSR1 (which also sets
``cancel_requested``); either raises ``JobInterrupted`` in the task, so ``finally`` blocks run;
SIGKILL follows after ``kill_grace_s``, and the next job gets a fresh child. The child's side
(soft time limit, progress reports, trace context) is :mod:`taskforge.worker.pool_child`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from taskforge.context import JobContext
from taskforge.errors import ConfigurationError, WorkerLostError
from taskforge.options import POOL_KINDS
from taskforge.worker.pool_child import (
    CANCEL_SIGNAL,
    INTERRUPT_SIGNAL,
    child_main,
    trace_carrier,
)

if TYPE_CHECKING:  # annotations only: children import the app through the loader
    from taskforge.app import Taskforge
    from taskforge.settings import Settings

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.pool")

#: What a pool can be asked to be (``--pool``, and ``@task(pool=...)``).
POOLS = POOL_KINDS
#: How long a new child may take to import the task modules before the pool gives up.
START_TIMEOUT_S = 60.0


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool child (the cause of the re-raised one)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n\n(in the pool process)\n{self.text}"


@dataclass(slots=True)
class _Child:
    process: BaseProcess
    conn: Connection
    jobs_done: int = 0


class ProcessPool:
    """Runs sync task functions in up to ``size`` child processes, one job per child at a time.

    ``app_loader`` (picklable: a module-level function or a ``functools.partial`` of one)
    returns the app in the child; the child then uses ``settings``. A child is replaced after
    ``max_tasks_per_child`` jobs, or once its resident memory passes ``max_memory_per_child_mb``
    (checked after each job).

    ``default`` (``--pool process``): sync tasks that name no pool run here; False (a thread-pool
    worker whose app has ``@task(pool="process")`` tasks): only those do. ``prestart`` children
    start with the worker (default: all ``size``); the rest start when a job needs them.
    """

    def __init__(
        self,
        app_loader: Callable[[], Taskforge],
        settings: Settings,
        *,
        size: int,
        max_tasks_per_child: int | None = None,
        max_memory_per_child_mb: float | None = None,
        kill_grace_s: float = 2.0,
        preload: Sequence[str] = (),
        default: bool = True,
        prestart: int | None = None,
    ):
        if size < 1:
            raise ConfigurationError(f"pool size must be >= 1, got {size}")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ConfigurationError(f"max_tasks_per_child must be >= 1, got {max_tasks_per_child}")
        if max_memory_per_child_mb is not None and max_memory_per_child_mb <= 0:
            raise ConfigurationError(
                f"max_memory_per_child_mb must be > 0, got {max_memory_per_child_mb}"
            )
        self.size = size
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child_mb = max_memory_per_child_mb
        self.kill_grace_s = kill_grace_s
        self.default = default
        self.prestart = size if prestart is None else max(0, min(prestart, size))
        self._loader = app_loader
        self._settings = settings
        self._mp = _context(["taskforge.worker.pool_child", *preload])
        self._idle: list[_Child] = []
        self._slots = anyio.Semaphore(size)
        self._closing = False
        self.started_children = 0  # children started over the pool's life (tests, metrics)
        self.lost_children = 0  # children that died or were killed mid-job

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start ``prestart`` children now, so a task module that fails to import stops the
        worker early.

        Raises:
            ConfigurationError: a child could not load the app (the message has its error).
        """
        while len(self._idle) < self.prestart:  # a second start() finds them running
            self._idle.append(await self._spawn())

    async def aclose(self) -> None:
        """Stop idle children (they finish nothing: no job is running once the worker stops)."""
        self._closing = True
        idle, self._idle = self._idle, []
        for child in idle:
            with contextlib.suppress(OSError):
                child.conn.send(None)
        with anyio.CancelScope(shield=True):
            for child in idle:
                await self._reap(child, self.kill_grace_s)

    # ------------------------------------------------------------------ running

    async def call(self, ctx: JobContext) -> Any:
        """Run ``ctx.job``'s task function in a child; returns its value or raises its error.

        Raises:
            WorkerLostError: the child died before it answered.
            BaseException: whatever the task raised (with the child's traceback as cause).
        """
        async with self._slots:
            child = await self._acquire(ctx)
            try:
                reply = await self._wait_reply(child, ctx)
            except BaseException:  # timeout or cancel: the child is mid-job, stop it
                with anyio.CancelScope(shield=True):
                    await self._kill(child, cancel=ctx.cancel_requested)
                raise
            return self._answer(child, reply, ctx)

    async def _acquire(self, ctx: JobContext) -> _Child:
        """An idle live child with the job sent to it (a child found dead is replaced)."""
        message = (ctx.job, ctx.attempt, ctx.token, trace_carrier())
        while True:
            if self._idle:
                child = self._idle.pop()
            else:
                with anyio.CancelScope(shield=True):  # a child half-started would be lost
                    child = await self._spawn()
            try:
                child.conn.send(message)
                return child
            except (BrokenPipeError, ConnectionResetError, EOFError):
                # Died while idle (the OOM killer picks big idle processes too): nothing ran.
                log.warning("pool process %s had died while idle; replacing it", child.process.pid)
                await self._reap(child, 0)

    async def _wait_reply(
        self, child: _Child, ctx: JobContext | None = None
    ) -> tuple[Any, ...] | None:
        """The child's answer (None: it died), passing its progress reports on to ``ctx``."""
        while True:
            await _readable(child.conn.fileno())
            while True:  # every message already there, without a wake-up each
                try:
                    reply: tuple[Any, ...] = child.conn.recv()
                except (EOFError, ConnectionResetError, OSError):
                    return None
                if reply[0] != "progress" or ctx is None:
                    return reply
                # Written by the worker's ProgressWriter with this lease's token (fenced as ever).
                ctx.set_progress(reply[1], reply[2])
                if not child.conn.poll():
                    break

    def _answer(self, child: _Child, reply: tuple[Any, ...] | None, ctx: JobContext) -> Any:
        if reply is None:
            self._lost(child, ctx)
        kind, payload, tb_text, rss_kib = reply
        child.jobs_done += 1
        self._recycle_if_spent(child, rss_kib)
        if kind == "ok":
            return payload
        exc = _rebuild(payload)
        exc.__cause__ = RemoteTraceback(tb_text)
        raise exc

    def _lost(self, child: _Child, ctx: JobContext) -> NoReturn:
        self.lost_children += 1
        child.process.join(1.0)
        code = child.process.exitcode
        how = (
            f"killed by {_signal_name(-code)}" if code is not None and code < 0 else f"exit {code}"
        )
        child.conn.close()
        raise WorkerLostError(
            f"pool process {child.process.pid} died running job {ctx.job.id} ({how}; the OOM "
            "killer sends SIGKILL); the attempt failed and follows the job's retry policy"
        )

    def _recycle_if_spent(self, child: _Child, rss_kib: int) -> None:
        spent = self.max_tasks_per_child is not None and child.jobs_done >= self.max_tasks_per_child
        limit_mb = self.max_memory_per_child_mb
        if limit_mb is not None and rss_kib / 1024 > limit_mb:
            log.info(
                "pool process %s uses %.0f MiB (> %.0f): replacing it",
                child.process.pid, rss_kib / 1024, limit_mb,
            )  # fmt: skip
            spent = True
        if not spent and not self._closing:
            self._idle.append(child)
            return
        with contextlib.suppress(OSError):
            child.conn.send(None)  # exit once read; a new child starts on demand
        child.conn.close()
        asyncio.get_running_loop().run_in_executor(None, child.process.join, self.kill_grace_s)

    # ------------------------------------------------------------------ children

    async def _spawn(self) -> _Child:
        parent_conn, child_conn = self._mp.Pipe(duplex=True)
        process = self._mp.Process(
            target=child_main,
            args=(child_conn, self._loader, self._settings),
            name="taskforge-pool",
            # Daemonic: stopped with the worker even on an error path. (So, as in most prefork
            # pools, a task cannot start multiprocessing children of its own.)
            daemon=True,
        )
        await anyio.to_thread.run_sync(process.start)
        child_conn.close()
        child = _Child(process, parent_conn)
        with anyio.move_on_after(START_TIMEOUT_S):
            hello = await self._wait_reply(child)
            if hello is not None and hello[0] == "ready":
                self.started_children += 1
                return child
            await self._reap(child, 0)
            detail = hello[1] if hello else f"it exited with code {process.exitcode}"
            raise ConfigurationError(f"a pool process could not load the tasks: {detail}")
        await self._reap(child, 0)
        raise ConfigurationError(f"a pool process did not load the tasks in {START_TIMEOUT_S}s")

    async def _kill(self, child: _Child, *, cancel: bool = False) -> None:
        """SIGUSR2 (children ignore SIGTERM), or for a cancel SIGUSR1 (the task sees
        JobInterrupted either way, and ``cancel_requested`` for a cancel), then SIGKILL after
        the grace."""
        self.lost_children += 1
        pid = child.process.pid
        if child.process.is_alive() and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, CANCEL_SIGNAL if cancel else INTERRUPT_SIGNAL)
        await self._reap(child, self.kill_grace_s)

    async def _reap(self, child: _Child, grace_s: float) -> None:
        with anyio.move_on_after(grace_s):
            await _readable(child.process.sentinel)  # the process ended
        if child.process.is_alive():
            child.process.kill()
        await anyio.to_thread.run_sync(child.process.join, 5.0)
        child.conn.close()


async def _readable(fd: int) -> None:
    """Wait on the loop until ``fd`` is readable (a reply, EOF, or a process sentinel)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _context(preload: list[str]) -> ForkServerContext | SpawnContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    mp = multiprocessing.get_context("forkserver")
    # Only before the server starts; later pools reuse it (their modules import per child).
    mp.set_forkserver_preload([m for m in preload if m])
    return mp


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _rebuild(payload: tuple[bytes | None, str, str]) -> BaseException:
    """The task's exception, unpickled; a stand-in of the same type name if it cannot be."""
    blob, type_name, message = payload
    if blob is not None:
        try:
            exc = pickle.loads(blob)
            if isinstance(exc, BaseException):
                return exc
        except Exception:  # an exception class whose arguments do not round-trip
            pass
    stand_in: type[Exception] = type(type_name, (Exception,), {"__module__": "taskforge.pool"})
    return stand_in(message)


__all__ = ["POOLS", "ProcessPool", "RemoteTraceback"]
