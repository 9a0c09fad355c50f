"""Handles on enqueued jobs: status, result, cancel."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from taskforge.job import JobRecord, JobStatus

R = TypeVar("R")


class HandleBackend(Protocol):
    """What a handle needs from the producer client (implemented by :class:`~taskforge.Client`)."""

    def record(self, queue: str, job_id: str) -> JobRecord: ...
    async def arecord(self, queue: str, job_id: str) -> JobRecord: ...
    def wait(self, queue: str, job_id: str, timeout_s: float | None) -> JobRecord: ...
    async def await_(self, queue: str, job_id: str, timeout_s: float | None) -> JobRecord: ...
    def cancel(self, queue: str, job_id: str) -> JobStatus: ...
    async def acancel(self, queue: str, job_id: str) -> JobStatus: ...
    def value(self, record: JobRecord) -> Any: ...


class JobHandle(Generic[R]):
    """A reference to one job. Cheap to build from an id: ``app.handle(job_id, queue=...)``.

    ``created`` is False when the enqueue found an existing job with the same id or unique key;
    the handle then points at that existing job.
    """

    __slots__ = ("_backend", "created", "id", "queue")

    def __init__(self, backend: HandleBackend, job_id: str, queue: str, *, created: bool = True):
        self._backend = backend
        self.id = job_id
        self.queue = queue
        self.created = created

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, queue={self.queue!r}, created={self.created})"

    def info(self) -> JobRecord:
        """The job's full record. Raises JobNotFoundError when it does not exist (or expired)."""
        return self._backend.record(self.queue, self.id)

    async def ainfo(self) -> JobRecord:
        """Async :meth:`info`."""
        return await self._backend.arecord(self.queue, self.id)

    def status(self) -> JobStatus:
        """The job's current status."""
        return self.info().status

    async def astatus(self) -> JobStatus:
        """Async :meth:`status`."""
        return (await self.ainfo()).status

    def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish (blocking on Redis, no polling) and return its value.

        ``timeout`` is in seconds (None waits forever).

        Raises:
            ResultTimeoutError: not finished in time.
            TaskFailedError: the task raised (``exc_type``, ``message``, ``traceback``); also an
                instance of the original class when that is safe to name (see
                :mod:`taskforge.remote_errors`).
            JobFailedError: the job ended cancelled, or dead without running.
        """
        value: R = self._backend.value(self._backend.wait(self.queue, self.id, timeout))
        return value

    async def aresult(self, timeout: float | None = None) -> R:
        """Async :meth:`result`."""
        value: R = self._backend.value(await self._backend.await_(self.queue, self.id, timeout))
        return value

    def cancel(self) -> JobStatus:
        """Cancel the job: a waiting job becomes ``cancelled`` at once; a running one is asked
        to stop (its status becomes ``cancelled`` when the worker acts). Returns the status seen.
        """
        return self._backend.cancel(self.queue, self.id)

    async def acancel(self) -> JobStatus:
        """Async :meth:`cancel`."""
        return await self._backend.acancel(self.queue, self.id)


__all__ = ["HandleBackend", "JobHandle"]
