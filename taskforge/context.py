"""What a running task can see of its own job: ``current_job()``."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from taskforge.errors import JobCancelledError, TaskforgeError
from taskforge.job import Job


@dataclass(slots=True)
class JobContext:
    """The running job, as its task sees it."""

    job: Job
    attempt: int
    token: str
    cancel_requested: bool = False
    progress: tuple[float, str] | None = None
    _on_progress: Callable[[JobContext], None] | None = field(default=None, repr=False)

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


_current: ContextVar[JobContext | None] = ContextVar("taskforge_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling task runs for. Raises TaskforgeError outside a task run by a worker."""
    ctx = _current.get()
    if ctx is None:
        raise TaskforgeError("current_job() is only available inside a task run by a worker")
    return ctx


def bind(ctx: JobContext) -> None:
    """Make ``ctx`` the current job of this context (the executor calls it)."""
    _current.set(ctx)
