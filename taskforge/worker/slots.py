"""The worker's slots: how many jobs it may still lease, and the jobs running now.

A slot is taken when a fetch leases a job and freed once that job's outcome is in Redis (not when
the task returns): at ``-c 1`` the next job must not be leased, and shown active, before this one
ended. Fetchers of every queue wait on one event for a slot to free.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import anyio

from taskforge.context import JobContext
from taskforge.protocol.records import Leased

log = logging.getLogger("taskforge.worker")


@dataclass(slots=True)
class Running:
    """A job between its lease and its outcome."""

    queue: str
    lease: Leased
    scope: anyio.CancelScope
    ctx: JobContext | None = None
    started: float = field(default_factory=time.monotonic)
    ran: bool = False  # reached the middleware's before_run


class Slots:
    """``free`` slots (fetchers reserve them before they lease) and the ``running`` jobs."""

    def __init__(self, concurrency: int):
        self.free = concurrency
        self.running: dict[str, Running] = {}
        self._freed = anyio.Event()

    async def wait(self) -> None:
        """Wait until a slot frees or a running job ends."""
        # Several fetchers wait on one event; only the first to wake arms a new one, or a
        # fetcher that went back to waiting would wait on an event nobody sets any more.
        event = self._freed
        await event.wait()
        if self._freed is event:
            self._freed = anyio.Event()

    def wake(self) -> None:
        """Wake the waiters without freeing a slot (a job ended; slots remain free)."""
        self._freed.set()

    def release(self, count: int = 1) -> None:
        """Free ``count`` slots and wake the waiters."""
        # Wake fetchers of other queues that saw no free slot while this fetch was out: they
        # would otherwise wait for a running job to end, and forever when none runs.
        if count > 0:
            self.free += count
            self._freed.set()

    def cancel(self, job_id: str) -> None:
        """A cancel request for ``job_id``: abort it if it runs here."""
        running = self.running.get(job_id)
        if running is None:
            return
        if running.ctx is not None:
            running.ctx.cancel_requested = True
        log.info("job %s cancel requested: aborting", job_id)
        running.scope.cancel()

    def abort_all(self) -> None:
        """Cancel every running job's scope: each is handed back unless its outcome is decided."""
        for running in list(self.running.values()):
            running.scope.cancel()


__all__ = ["Running", "Slots"]
