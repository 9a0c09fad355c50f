"""The worker's pause while Redis refuses writes for memory (``maxmemory`` reached, an OOM reply).

Redis at ``maxmemory`` with ``noeviction`` refuses the fetch script whole and the outcome
writes, but still renews leases (the extend script is flagged ``allow-oom``). So the worker stops
fetching, keeps its leases and its unwritten outcomes, retries the outcomes with backoff, and
resumes once Redis accepts a write: no job runs twice because of it.
"""

from __future__ import annotations

import logging
import time

import anyio

log = logging.getLogger("taskforge.worker")

__all__ = ["MemoryPause"]


class MemoryPause:
    """Since when Redis refuses this worker's writes for memory, and a gate fetchers wait on."""

    def __init__(self, worker_id: str):
        self.worker_id = worker_id
        self.since: float | None = None
        self._over = anyio.Event()

    @property
    def active(self) -> bool:
        """Whether the last write was refused for memory and none has been accepted since."""
        return self.since is not None

    def refused(self, exc: Exception, *, outcomes: int) -> float:
        """Note an OOM refusal (logged once per episode); returns the backoff to wait, s."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self._over = anyio.Event()
            log.error(
                "worker %s: Redis is out of memory (OOM): %s; fetching paused, %d outcomes kept"
                " and retried with backoff, leases kept",
                self.worker_id, exc, outcomes,
            )  # fmt: skip
        return min(2.0, 0.1 + (now - self.since) / 5)

    def accepted(self) -> None:
        """Redis took a write again: end the pause (logged) and let fetchers go."""
        if self.since is None:
            return
        log.warning(
            "worker %s: Redis accepts writes again after %.1fs (OOM over); fetching resumes",
            self.worker_id, time.monotonic() - self.since,
        )  # fmt: skip
        self.since = None
        self._over.set()

    async def wait(self) -> None:
        """Return once the pause is over (at once when there is none)."""
        if self.since is not None:
            await self._over.wait()
