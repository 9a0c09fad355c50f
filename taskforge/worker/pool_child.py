"""The child's side of the process pool: what runs inside each ``taskforge-pool`` process.

A child serves one job at a time over its pipe. While a job runs, the child sends progress
reports up the same pipe (``("progress", fraction, message)``); the worker, which owns the Redis
connection and the job's lease, writes them with the lease's fencing token. The job's answer
ends the exchange. Signals carry what the worker decides:

* ``SIGALRM`` (armed with ``setitimer`` for the job's ``soft_timeout``) raises
  ``SoftTimeoutExceeded`` in the task, an ``Exception`` it may catch to clean up;
* ``SIGUSR1`` means the job was cancelled: ``current_job().cancel_requested`` becomes true and
  ``JobInterrupted`` is raised, as in a worker thread (so ``raise_if_cancelled()`` raises too);
* ``SIGUSR2`` (hard timeout, worker stop) raises ``JobInterrupted``; after the worker's grace,
  SIGKILL.

``SIGTERM`` and ``SIGINT`` are ignored: a stop sent to the whole process group or cgroup
(Ctrl-C, systemd's default ``KillMode=control-group``, ``dumb-init``) reaches the children as
well as the worker, and the worker decides what happens to running jobs (it lets them finish
within its grace, or hands them back); a child that took the signal itself would die mid-job and
cost the job an attempt. SIGKILL still ends a child at once.

Signal handlers run in the child's main thread, the one running the task, and interrupt a
blocking call (``time.sleep``, a socket read) rather than waiting for it to return. A task that
installs its own ``SIGALRM`` or ``SIGUSR1`` handler loses the soft limit or the gentle cancel (a
cancel then ends with the SIGKILL after the grace) for its own job: the child installs its
handlers again before the next one.

The worker passes the OpenTelemetry context of the attempt's ``process`` span (when the worker
has OpenTelemetry loaded); the child makes it current around the call, so spans the task opens
are children of that span (given a tracer provider configured in the child, e.g. by the task
module).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from taskforge.context import JobContext, bind
from taskforge.driver.task_clients import TaskClients
from taskforge.errors import JobInterrupted, SoftTimeoutExceeded
from taskforge.payload import typed_arguments
from taskforge.serializer import PICKLE

if TYPE_CHECKING:
    from taskforge.app import Taskforge
    from taskforge.settings import Settings

#: The signal the worker sends a child whose running job was cancelled.
CANCEL_SIGNAL = signal.SIGUSR1 if hasattr(signal, "SIGUSR1") else signal.SIGTERM
#: The signal the worker sends a child to stop its job (hard timeout, worker stop). Not SIGTERM,
#: which the child ignores: a group-wide SIGTERM is the worker's to act on.
INTERRUPT_SIGNAL = signal.SIGUSR2 if hasattr(signal, "SIGUSR2") else signal.SIGTERM


class _State:
    """The job this child runs now, and its soft limit's state (read by signal handlers)."""

    ctx: JobContext | None = None
    conn: Connection | None = None
    clients: TaskClients | None = None  # current_job().sync_redis: one client per child
    soft_s: float | None = None
    soft_armed = False  # the timer may still fire for this job
    soft_due = False  # it fired during a send: raise once the send is done
    sending = 0  # sends under way in the main thread (a raise mid-send would garble the pipe)
    lock = threading.Lock()


def child_main(conn: Connection, loader: Callable[[], Taskforge], settings: Settings) -> None:
    """A pool process's entry point: load the app, say ready, serve jobs until told to stop."""
    _install_handlers()
    try:
        app = loader()
        app.configure(settings)
    except BaseException as exc:  # report why, then exit: the parent raises a clear error
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    _State.conn = conn
    _State.clients = TaskClients(settings)
    conn.send(("ready", os.getpid()))
    try:
        _serve(conn, app)
    except JobInterrupted:
        return  # interrupted: the worker already recorded the outcome and waits for this exit
    finally:
        _State.clients.close()


def _install_handlers() -> None:
    """The child's signal handlers; installed again before each job, so a task that replaced
    one (its own SIGALRM, an ignored SIGUSR2) costs only its own job the soft limit or the
    gentle stop, never the jobs after it in this child."""
    # Ctrl-C and a group-wide SIGTERM reach the children too: the worker decides what happens
    # to running jobs.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if INTERRUPT_SIGNAL != signal.SIGTERM:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(INTERRUPT_SIGNAL, _interrupt)
    if CANCEL_SIGNAL != signal.SIGTERM:
        signal.signal(CANCEL_SIGNAL, _cancel)
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, _soft_limit)


def _serve(conn: Connection, app: Taskforge) -> None:
    server = os.getpid()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the worker is gone
        if message is None:
            return
        _install_handlers()
        reply = _run_one(app, *message)
        if os.getpid() != server:
            # A task forked and its copy returned from the task too: that copy must never
            # answer on this pipe (its reply would be taken as the next job's result) nor
            # read the next job from it.
            os._exit(0)
        _send(reply)


def _run_one(
    app: Taskforge, job: Any, attempt: int, token: str, trace: dict[str, str]
) -> tuple[Any, ...]:
    ctx = JobContext(job, attempt, token, _on_progress=_report, _clients=_State.clients)
    bind(ctx)
    _State.ctx = ctx
    try:
        fn = app.registry.get(job.task).fn
        # As on the thread path: JSON arguments get the types the signature names (the worker
        # already validated them; pickled ones are the objects they were).
        if job.serializer == PICKLE:
            args, kwargs = tuple(job.args), job.kwargs
        else:
            args, kwargs = typed_arguments(fn, job.args, job.kwargs)
        with _traced(trace), _soft_limited(job.soft_timeout_s):
            value = fn(*args, **kwargs)
        pickle.dumps(value)  # fail here, as the task's error, rather than inside send()
        return ("ok", value, "", _rss_kib())
    except JobInterrupted:
        raise
    # The job boundary of the child: whatever the task raised goes back to the worker, as on
    # the thread path (KeyboardInterrupt, GeneratorExit, a BaseException of its own too).
    except BaseException as exc:
        return ("err", _portable(exc), _format(exc), _rss_kib())
    finally:
        _State.ctx = None


def _report(ctx: JobContext) -> None:
    """``set_progress`` in the child: send the report up the pipe (the worker writes it)."""
    if ctx.progress is not None and ctx is _State.ctx:
        _send(("progress", *ctx.progress))


def _send(message: tuple[Any, ...]) -> None:
    conn = _State.conn
    if conn is None:
        return
    main = threading.current_thread() is threading.main_thread()
    with _State.lock:
        if main:
            _State.sending += 1
        try:
            conn.send(message)
        finally:
            if main:
                _State.sending -= 1
    if main and _State.soft_due:
        _State.soft_due = False
        raise _soft_exceeded()


# ---------------------------------------------------------------------- signals


@contextlib.contextmanager
def _soft_limited(soft_s: float | None) -> Iterator[None]:
    """Arm SIGALRM for ``soft_s`` around the task's call (nothing when there is no limit)."""
    if soft_s is None or not hasattr(signal, "setitimer"):
        yield
        return
    _State.soft_s, _State.soft_armed, _State.soft_due = soft_s, True, False
    signal.setitimer(signal.ITIMER_REAL, soft_s)
    try:
        yield
    finally:
        _State.soft_armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        _State.soft_due = False


def _soft_limit(signum: int, frame: Any) -> None:
    if not _State.soft_armed:
        return  # the job it was armed for has ended
    _State.soft_armed = False
    if _State.sending:
        _State.soft_due = True  # raised by _send once the message is whole
        return
    raise _soft_exceeded()


def _soft_exceeded() -> SoftTimeoutExceeded:
    return SoftTimeoutExceeded(f"soft time limit of {_State.soft_s}s exceeded")


def _interrupt(signum: int, frame: Any) -> None:
    raise JobInterrupted("the worker stopped this job (timeout or stop)")


def _cancel(signum: int, frame: Any) -> None:
    ctx = _State.ctx
    if ctx is None:  # the job ended as the cancel came: the worker drops this child, so exit
        raise JobInterrupted("the worker stopped this child (cancel)")
    ctx.cancel_requested = True
    _State.soft_armed = False
    raise JobInterrupted(f"job {ctx.job.id} was cancelled")


# ---------------------------------------------------------------------- tracing


@contextlib.contextmanager
def _traced(carrier: dict[str, str]) -> Iterator[None]:
    """Make the worker's span (propagated in ``carrier``) current around the task's call."""
    if not carrier:
        yield
        return
    try:
        from opentelemetry import context, propagate
    except ImportError:  # the worker had it; this interpreter's path does not
        yield
        return
    token = context.attach(propagate.extract(carrier))
    try:
        yield
    finally:
        context.detach(token)


def trace_carrier() -> dict[str, str]:
    """The current OpenTelemetry context (in the worker: the attempt's ``process`` span) as
    headers, with the global propagator; empty when OpenTelemetry is not loaded."""
    if "opentelemetry.propagate" not in sys.modules:
        return {}  # never import it here: only a worker with the otel middleware has it
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


# ---------------------------------------------------------------------- answers


def _portable(exc: BaseException) -> tuple[bytes | None, str, str]:
    try:
        blob: bytes | None = pickle.dumps(exc)
    except Exception:  # an exception holding a socket, a lock...: send its name and message
        blob = None
    return blob, type(exc).__name__, _describe(exc)


def _describe(exc: BaseException) -> str:
    # User code: its __str__/__repr__ may raise (the worker's Failure.of says the same).
    for render in (str, repr):
        try:
            text = render(exc)
        except Exception as err:
            text = f"<{type(exc).__name__}.__{render.__name__}__ failed: {type(err).__name__}>"
        if text:
            return text
    return type(exc).__name__


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))[-8192:]


def _rss_kib() -> int:
    """Resident memory now (KiB): /proc on Linux, else the peak from getrusage."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak


__all__ = ["CANCEL_SIGNAL", "INTERRUPT_SIGNAL", "child_main", "trace_carrier"]
