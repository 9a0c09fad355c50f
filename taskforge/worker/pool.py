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
policy. A timed-out or cancelled job's child gets SIGTERM (which raises ``JobInterrupted`` in
the task, so ``finally`` blocks run), then SIGKILL after ``kill_grace_s``; the next job gets a
fresh child.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from taskforge.context import JobContext, bind
from taskforge.errors import ConfigurationError, JobInterrupted, WorkerLostError
from taskforge.payload import typed_arguments
from taskforge.serializer import PICKLE

if TYPE_CHECKING:  # annotations only: children import the app through the loader
    from taskforge.app import Taskforge
    from taskforge.settings import Settings

log = logging.getLogger(__name__)

#: What a pool can be asked to be.
POOLS = ("thread", "process")
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
        self._loader = app_loader
        self._settings = settings
        self._mp = _context(["taskforge.worker.pool", *preload])
        self._idle: list[_Child] = []
        self._slots = anyio.Semaphore(size)
        self._closing = False
        self.started_children = 0  # children started over the pool's life (tests, metrics)
        self.lost_children = 0  # children that died or were killed mid-job

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every child now, so a task module that fails to import stops the worker early.

        Raises:
            ConfigurationError: a child could not load the app (the message has its error).
        """
        while len(self._idle) < self.size:  # a second start() finds them running
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
                reply = await self._wait_reply(child)
            except BaseException:  # timeout or cancel: the child is mid-job, stop it
                with anyio.CancelScope(shield=True):
                    await self._kill(child)
                raise
            return self._answer(child, reply, ctx)

    async def _acquire(self, ctx: JobContext) -> _Child:
        """An idle live child with the job sent to it (a child found dead is replaced)."""
        message = (ctx.job, ctx.attempt, ctx.token)
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

    async def _wait_reply(self, child: _Child) -> tuple[Any, ...] | None:
        await _readable(child.conn.fileno())
        try:
            reply: tuple[Any, ...] = child.conn.recv()
            return reply
        except (EOFError, ConnectionResetError, OSError):
            return None

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
            target=_child_main,
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

    async def _kill(self, child: _Child) -> None:
        """SIGTERM (the task sees JobInterrupted), then SIGKILL after the grace."""
        self.lost_children += 1
        if child.process.is_alive():
            child.process.terminate()
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


# ---------------------------------------------------------------------- the child's side


def _child_main(conn: Connection, loader: Callable[[], Taskforge], settings: Settings) -> None:
    # Ctrl-C reaches the whole process group: the parent decides what happens to running jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app = loader()
        app.configure(settings)
    except BaseException as exc:  # report why, then exit: the parent raises a clear error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    try:
        _serve(conn, app)
    except JobInterrupted:
        return  # SIGTERM: the worker already recorded the outcome and waits for this exit


def _serve(conn: Connection, app: Taskforge) -> None:
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        if message is None:
            return
        conn.send(_run_one(app, *message))


def _run_one(app: Taskforge, job: Any, attempt: int, token: str) -> tuple[Any, ...]:
    ctx = JobContext(job, attempt, token)
    bind(ctx)
    try:
        fn = app.registry.get(job.task).fn
        # As on the thread path: JSON arguments get the types the signature names (the worker
        # already validated them; pickled ones are the objects they were).
        if job.serializer == PICKLE:
            args, kwargs = tuple(job.args), job.kwargs
        else:
            args, kwargs = typed_arguments(fn, job.args, job.kwargs)
        value = fn(*args, **kwargs)
        pickle.dumps(value)  # fail here, as the task's error, rather than inside send()
        return ("ok", value, "", _rss_kib())
    except JobInterrupted:
        raise
    # The job boundary of the child: whatever the task raised goes back to the worker.
    except (Exception, SystemExit) as exc:
        return ("err", _portable(exc), _format(exc), _rss_kib())


def _portable(exc: BaseException) -> tuple[bytes | None, str, str]:
    try:
        blob: bytes | None = pickle.dumps(exc)
    except Exception:  # an exception holding a socket, a lock...: send its name and message
        blob = None
    return blob, type(exc).__name__, str(exc) or repr(exc)


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-8192:]


def _interrupt(signum: int, frame: Any) -> None:
    raise JobInterrupted("the worker stopped this job (timeout or cancel)")


def _rss_kib() -> int:
    """Resident memory now (KiB): /proc on Linux, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak


__all__ = ["POOLS", "ProcessPool", "RemoteTraceback"]
