"""The integration guide's queue API: ``JobQueue`` and ``JobWorker`` over the client and worker.

Code written against the integration guide runs with only its imports changed::

    from taskforge import JobQueue, JobPriority
    queue = JobQueue(queue_name="default")
    job_id = await queue.enqueue(task_name="email.send", payload={"to": "a@b.c"})

``payload`` becomes the task's keyword arguments.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from taskforge.app import Taskforge, default_app
from taskforge.job import JobPriority, JobRecord
from taskforge.protocol.keys import check_queue_name
from taskforge.task import Call, TaskOptions, coerce_priority
from taskforge.worker import Worker, WorkerStats

__all__ = ["JobQueue", "JobWorker"]


class JobQueue:
    """One named queue of an app (the default app unless given)."""

    def __init__(self, queue_name: str = "default", *, app: Taskforge | None = None):
        self.queue_name = check_queue_name(queue_name)
        self.app = app or default_app

    async def _ensure_initialized(self) -> None:
        """Check that Redis answers (the seed calls this before enqueueing; optional here)."""
        broker = self.app.client.abroker
        await broker.run(broker.ops.announce_queue(self.queue_name))

    async def enqueue(
        self,
        task_name: str,
        payload: dict[str, Any] | None = None,
        priority: JobPriority | str = JobPriority.NORMAL,
        max_retries: int = 3,
        scheduled_at: datetime | None = None,
        *,
        job_id: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Enqueue ``task_name(**payload)``; returns the job id.

        A naive ``scheduled_at`` (as in the seed's ``datetime.now() + timedelta(hours=1)``) is
        read as local time, like ``datetime.timestamp()`` does; the typed ``Task.schedule`` API
        refuses naive datetimes instead.
        """
        options = TaskOptions(
            name=task_name,
            queue=self.queue_name,
            priority=coerce_priority(priority),
            max_retries=max_retries,
            timeout=timeout,
            job_id=job_id,
        ).checked()
        run_at = None
        if scheduled_at is not None:
            run_at = scheduled_at if scheduled_at.tzinfo else scheduled_at.astimezone()
        call = Call(task_name, (), dict(payload or {}), options, 0.0, run_at)
        (handle,) = await self.app.asubmit([call])
        return handle.id

    async def get_queue_size(self, priority: JobPriority | str | None = None) -> int:
        """Ready jobs, of one priority or all."""
        broker = self.app.client.abroker
        counts = await broker.run(broker.ops.counts(self.queue_name))
        if priority is None:
            return counts.ready_total
        return counts.ready[coerce_priority(priority)]

    async def get_scheduled_count(self) -> int:
        """Jobs waiting for their time (scheduled or retry backoff)."""
        broker = self.app.client.abroker
        return (await broker.run(broker.ops.counts(self.queue_name))).scheduled

    async def get_job(self, job_id: str) -> JobRecord | None:
        """The job's record (``.status``, ``.attempts``, ...), or None when unknown."""
        broker = self.app.client.abroker
        return await broker.run(broker.ops.record(self.queue_name, job_id))


class JobWorker:
    """The seed's worker: ``await JobWorker(queue_name="default").start()`` runs until stopped."""

    def __init__(
        self,
        queue_name: str = "default",
        *,
        app: Taskforge | None = None,
        concurrency: int = 10,
        burst: bool = False,
    ):
        self.app = app or default_app
        self.worker = Worker(
            self.app.settings,
            self.app.registry,
            queues=[queue_name],
            concurrency=concurrency,
            burst=burst,
            middleware=self.app.middleware,
        )

    async def start(self) -> WorkerStats:
        """Run the worker (returns when stopped, or drained in burst mode)."""
        return await self.worker.run()

    def stop(self) -> None:
        """Ask the worker to stop gracefully."""
        self.worker.stop()
