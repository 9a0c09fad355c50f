"""Cluster-wide rate and concurrency limits of tasks, checked by the worker before a job runs.

A rate limit is a counter per task per fixed window (``limit_rate.lua``); a concurrency limit is
a sorted set per task of running job ids with leased deadlines (``limit_acquire.lua``), so the
slot of a worker that died frees itself. Both live in Redis, so they hold across all workers.
A job over a limit is not failed: the worker hands it back to wait (``Deferred``). Tasks without
limits cost nothing here: no Redis call is made for them.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio

from taskforge.errors import BrokerError
from taskforge.limits import RateLimit
from taskforge.protocol.brokers import AsyncBroker
from taskforge.task import Task

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.limiter")

#: A job waiting for a concurrency slot tries again after a random wait in this range (s).
SLOT_RETRY_S = (0.2, 1.0)
#: Wait (s) when Redis could not be asked; the hand-back is retried with the other outcomes.
OUTAGE_RETRY_S = 1.0


class Limiter:
    """Acquires and releases limits for the jobs of one worker."""

    def __init__(self, broker: AsyncBroker):
        self.broker = broker
        self._held: dict[str, set[str]] = {}
        self._rates: dict[str, RateLimit] = {}

    async def acquire(self, task: Task[Any, Any], job_id: str) -> float | None:
        """None when the job may run now, else seconds it should wait before it tries again.

        A job that got a concurrency slot holds it until :meth:`release`.
        """
        opts = task.opts
        if opts.concurrency is None and opts.rate_limit is None:
            return None
        ops = self.broker.ops
        try:
            if opts.concurrency is not None:
                hint_ms = await self.broker.run(
                    ops.slot_acquire(task.name, job_id, opts.concurrency)
                )
                if hint_ms:
                    return min(hint_ms / 1000, random.uniform(*SLOT_RETRY_S))
                self._held.setdefault(task.name, set()).add(job_id)
            if opts.rate_limit is not None:
                rate = self._rate(opts.rate_limit)
                wait_ms = await self.broker.run(
                    ops.rate_acquire(task.name, rate.limit, rate.window_ms)
                )
                if wait_ms:
                    await self.release(task, job_id)
                    return wait_ms / 1000
        except BrokerError as exc:
            log.warning("limits of %s cannot be checked (%s); job %s waits", task.name, exc, job_id)
            await self.release(task, job_id)
            return OUTAGE_RETRY_S
        return None

    async def release(self, task: Task[Any, Any], job_id: str) -> None:
        """Give back the job's concurrency slot, if it holds one (a failed release lapses)."""
        held = self._held.get(task.name)
        if held is None or job_id not in held:
            return
        held.discard(job_id)
        try:
            with anyio.CancelScope(shield=True):
                await self.broker.run(self.broker.ops.slot_release(task.name, [job_id]))
        except BrokerError as exc:
            log.warning("slot of job %s not released (%s); it lapses with its lease", job_id, exc)

    async def extend(self) -> None:
        """Renew the slots of this worker's running jobs (called with the job leases)."""
        for name, job_ids in list(self._held.items()):
            if not job_ids:
                continue
            try:
                await self.broker.run(self.broker.ops.slot_extend(name, sorted(job_ids)))
            except BrokerError as exc:
                log.warning("concurrency slots of %s not renewed (%s); retrying", name, exc)

    def _rate(self, spec: str) -> RateLimit:
        rate = self._rates.get(spec)
        if rate is None:
            rate = self._rates[spec] = RateLimit.parse(spec)
        return rate


__all__ = ["OUTAGE_RETRY_S", "SLOT_RETRY_S", "Limiter"]
