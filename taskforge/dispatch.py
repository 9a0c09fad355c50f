"""What ``.delay()`` on a task or a workflow calls: the app's sending side, and lookups by id.

:class:`AppDispatcher` implements the dispatcher protocols tasks and workflows hold
(:class:`taskforge.call.Dispatcher`, :class:`taskforge.canvas.WorkflowDispatcher`) over the
app's client, which it resolves only when something is sent, so creating an app or registering a
task connects to nothing. :class:`taskforge.app.Taskforge` is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from taskforge.call import Call
from taskforge.canvas import Canvas
from taskforge.client import Client
from taskforge.errors import JobNotFoundError
from taskforge.handle import JobHandle

if TYPE_CHECKING:  # imported on use: a worker sends no workflow and looks up no job by id
    from taskforge.workflow import WorkflowClient, WorkflowHandle


class AppDispatcher:
    """Sends calls and workflows through :attr:`client`, and finds jobs and workflows by id."""

    _workflows: WorkflowClient | None = None

    @property
    def client(self) -> Client:
        """The producer client (the app's own, created on first use)."""
        raise NotImplementedError

    def submit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Enqueue calls (see :meth:`Client.submit`)."""
        return self.client.submit(calls)

    async def asubmit(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Async :meth:`submit`."""
        return await self.client.asubmit(calls)

    def enqueue_many(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Bulk enqueue ``[add.s(1, 2), add.s(3, 4), ...]``: one round trip per queue."""
        return self.submit(calls)

    async def aenqueue_many(self, calls: Sequence[Call]) -> list[JobHandle[Any]]:
        """Async :meth:`enqueue_many`."""
        return await self.asubmit(calls)

    @property
    def workflows(self) -> WorkflowClient:
        """The workflow client (created on first use)."""
        if self._workflows is None:
            from taskforge.workflow import WorkflowClient

            self._workflows = WorkflowClient(self.client)
        return self._workflows

    def submit_workflow(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle:
        """Send a chain, group or chord (what ``workflow.delay()`` does)."""
        return self.workflows.submit(canvas, workflow_id=workflow_id, when=when)

    async def asubmit_workflow(
        self,
        canvas: Canvas,
        *,
        workflow_id: str | None = None,
        when: datetime | timedelta | float | None = None,
    ) -> WorkflowHandle:
        """Async :meth:`submit_workflow`."""
        return await self.workflows.asubmit(canvas, workflow_id=workflow_id, when=when)

    def workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle on an existing workflow, from its id."""
        return self.workflows.handle(workflow_id)

    def handle(self, job_id: str, *, queue: str | None = None) -> JobHandle[Any]:
        """A handle on an existing job, from its id.

        With ``queue``, no I/O. Without it, the job's queue is found first: one round trip that
        asks every known queue at once (no scan, no per-job index).

        Raises:
            JobNotFoundError: ``queue`` not given and no queue holds the job.
        """
        if queue is None:
            from taskforge.protocol.inspection import InspectOps

            broker = self.client.broker
            queue = _located(job_id, broker.run(InspectOps(broker.ops).locate(job_id)))
        return JobHandle(self.client, job_id, queue)

    async def ahandle(self, job_id: str, *, queue: str | None = None) -> JobHandle[Any]:
        """Async :meth:`handle` (the lookup does not block the event loop)."""
        if queue is None:
            from taskforge.protocol.inspection import InspectOps

            broker = self.client.abroker
            queue = _located(job_id, await broker.run(InspectOps(broker.ops).locate(job_id)))
        return JobHandle(self.client, job_id, queue)


def _located(job_id: str, queue: str | None) -> str:
    if queue is None:
        raise JobNotFoundError(
            f"no job {job_id!r} in any queue (never enqueued, purged, or its record expired)"
        )
    return queue


__all__ = ["AppDispatcher"]
