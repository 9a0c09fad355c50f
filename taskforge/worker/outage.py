"""Riding out Redis trouble: back off while it is unreachable, pause while it is out of memory.

The fetcher and the outcome writer share one :class:`Outage`, so the worker logs one error when
Redis goes away and one line when it is back, however many loops saw it.
"""

from __future__ import annotations

import logging
import time

import anyio

from taskforge.errors import BrokerConnectionError, BrokerError, BrokerOutOfMemoryError
from taskforge.worker.oom import MemoryPause

log = logging.getLogger("taskforge.worker")


class Outage:
    """The worker's view of Redis' health: since when it fails, and its memory pause."""

    def __init__(self, worker_id: str):
        self.worker_id = worker_id
        self.oom = MemoryPause(worker_id)
        self._since: float | None = None

    async def back_off(self, exc: BrokerError, *, unwritten: int) -> None:
        """Sleep after a failed call: longer the longer Redis fails (at most 2 s); an OOM
        refusal pauses as :class:`MemoryPause` says (``unwritten``: outcomes held back)."""
        if isinstance(exc, BrokerOutOfMemoryError):
            await anyio.sleep(self.oom.refused(exc, outcomes=unwritten))
            return
        now = time.monotonic()
        if self._since is None:
            self._since = now
            log.error("worker %s %s; retrying", self.worker_id, _trouble(exc))
        await anyio.sleep(min(2.0, 0.1 + (now - self._since) / 5))

    def recovered(self) -> None:
        """A call succeeded: end the memory pause and log the reconnect after an outage."""
        self.oom.accepted()
        if self._since is not None:
            log.warning(
                "worker %s reconnected to Redis after %.1fs",
                self.worker_id, time.monotonic() - self._since,
            )  # fmt: skip
            self._since = None


def _trouble(exc: BrokerError) -> str:
    # Say what failed: an unreachable server, or one that answered with an error (a script
    # error, WRONGTYPE), which a reconnect will not fix.
    if isinstance(exc, BrokerConnectionError):
        return f"cannot reach Redis: {exc}"
    return f"Redis error: {exc}"


__all__ = ["Outage"]
