"""Progress reports of running jobs: kept on the job record and published on ``job:updates``.

``current_job().set_progress(0.4, "step 2")`` may be called from an async task (on the event
loop) or a sync one (in a worker thread). Reports are coalesced per job, the latest wins, and
written in one fenced script call per queue, so a tight loop of reports costs little.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import anyio
import anyio.from_thread

from taskforge.context import JobContext
from taskforge.errors import BrokerError
from taskforge.protocol.brokers import AsyncBroker

log = logging.getLogger(__name__)


class ProgressWriter:
    """Collects progress reports of one worker's jobs and writes them to Redis."""

    def __init__(self, broker: AsyncBroker):
        self.broker = broker
        self._pending: dict[str, tuple[str, str, float, str]] = {}
        self._queues: dict[str, str] = {}
        self._wanted = anyio.Event()
        self._loop_thread: int | None = None
        self._lock = threading.Lock()

    def reporter(self, queue: str) -> Callable[[JobContext], None]:
        """The ``JobContext`` callback for a job of ``queue``."""

        def report(ctx: JobContext) -> None:
            if ctx.progress is None:
                return
            fraction, message = ctx.progress
            with self._lock:
                self._pending[ctx.job.id] = (ctx.job.id, ctx.token, fraction, message)
                self._queues[ctx.job.id] = queue
            self._wake()

        return report

    def _wake(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._wanted.set()
            return
        # RuntimeError: the worker's loop is gone (an abandoned sync task); nothing to wake.
        with contextlib.suppress(RuntimeError):
            anyio.from_thread.run_sync(self._wanted.set)

    async def run(self) -> None:
        """Write reports as they come, until cancelled."""
        self._loop_thread = threading.get_ident()
        while True:
            await self._wanted.wait()
            self._wanted = anyio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Write the reports gathered so far (best effort: a failed write is logged, dropped)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            queues, self._queues = self._queues, {}
        by_queue: dict[str, list[tuple[str, str, float, str]]] = {}
        for job_id, report in pending.items():
            by_queue.setdefault(queues[job_id], []).append(report)
        for queue, reports in by_queue.items():
            try:
                await self.broker.run(self.broker.ops.progress(queue, reports))
            except BrokerError as exc:
                log.warning("progress of %d job(s) not written: %s", len(reports), exc)


__all__ = ["ProgressWriter"]
