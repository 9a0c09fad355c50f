"""What a running task can see of its own job: ``current_job()``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskforge.errors import JobCancelledError, TaskforgeError
from taskforge.job import Job, new_job_id

if TYPE_CHECKING:  # a task that never asks for a client never loads redis-py's
    from taskforge.driver.connection import AsyncRedis, SyncRedis
    from taskforge.driver.task_clients import TaskClients


@dataclass(slots=True)
class JobContext:
    """The running job, as its task sees it."""

    job: Job
    attempt: int
    token: str
    cancel_requested: bool = False
    progress: tuple[float, str] | None = None
    _on_progress: Callable[[JobContext], None] | None = field(default=None, repr=False)
    _clients: TaskClients | None = field(default=None, repr=False)

    @property
    def redis(self) -> AsyncRedis:
        """The worker's asyncio Redis client, for an async task's own commands.

        Made once per worker from its settings (a Cluster or Sentinel URL gives that kind of
        client), with its own pool; replies are ``str`` (``decode_responses``). Do not close it:
        the worker does, when it stops.

        Raises:
            TaskforgeError: in a sync task (use :attr:`sync_redis`), or outside a worker.
        """
        return self._lent().asyncio_client()

    @property
    def sync_redis(self) -> SyncRedis:
        """The worker's blocking Redis client, for a sync task's own commands (see :attr:`redis`).

        Raises:
            TaskforgeError: outside a worker.
        """
        return self._lent().sync_client()

    def _lent(self) -> TaskClients:
        if self._clients is None:
            raise TaskforgeError(
                f"job {self.job.id} has no worker Redis client: current_job().redis is lent by "
                "a worker; a task called directly (or under job_context()) gets none. Run it "
                "through a worker, or app.testing() (eager mode runs it in one)"
            )
        return self._clients

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Report progress (0..1) and a message; stored on the job record and published."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress must be within 0..1, got {fraction}")
        self.progress = (fraction, message)
        if self._on_progress is not None:
            self._on_progress(self)

    def raise_if_cancelled(self) -> None:
        """For sync tasks: raise JobCancelledError when cancellation was requested."""
        if self.cancel_requested:
            raise JobCancelledError(f"job {self.job.id} was cancelled")


@dataclass(slots=True)
class StandInContext(JobContext):
    """What ``current_job()`` gives a task called directly, not by a worker (in a test).

    Its job has a fresh id and the task's options; ``attempt`` is 1 unless given. Progress is
    kept, every report in ``progress_history``; nothing is written to Redis.
    """

    progress_history: list[tuple[float, str]] = field(default_factory=list)

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1) and a message in ``progress`` and ``progress_history``."""
        JobContext.set_progress(self, fraction, message)
        self.progress_history.append((fraction, message))


def stand_in(
    task: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    queue: str = "default",
    job_id: str | None = None,
    attempt: int = 1,
    cancel_requested: bool = False,
) -> StandInContext:
    """A stand-in job context for a call of ``task`` outside a worker (fresh id unless given)."""
    job = Job(
        id=job_id or new_job_id(),
        task=task,
        args=list(args),
        kwargs=dict(kwargs or {}),
        queue=queue,
    )
    return StandInContext(job, attempt, token="", cancel_requested=cancel_requested)


_current: ContextVar[JobContext | None] = ContextVar("taskforge_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task runs for.

    Inside a task run by a worker: its job. Inside a task called directly (``send(...)`` in a
    test): a :class:`StandInContext`. Raises TaskforgeError anywhere else.
    """
    ctx = _current.get()
    if ctx is None:
        raise TaskforgeError(
            "current_job() is only available inside a task: one run by a worker, or called "
            "directly (send(...)); to set one up yourself, use taskforge.testing.job_context()"
        )
    return ctx


def has_job() -> bool:
    """True when a job context is bound here (a worker's job, or a stand-in)."""
    return _current.get() is not None


@contextmanager
def bound(ctx: JobContext) -> Iterator[JobContext]:
    """Make ``ctx`` the current job inside the block, and restore the previous one after."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def bind(ctx: JobContext) -> None:
    """Make ``ctx`` the current job of this context (the executor calls it)."""
    _current.set(ctx)


__all__ = ["JobContext", "StandInContext", "bind", "bound", "current_job", "has_job", "stand_in"]
