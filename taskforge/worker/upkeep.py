"""Upkeep: what keeps a worker's claims alive while its jobs run.

Lease renewal (one call per queue renews every lease the worker holds, the running jobs' and those
whose outcome is not written yet, and reports leases lost and cancels requested), the heartbeat
that ``taskforge workers`` reads, and the control channel that carries cancel requests.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import anyio

from taskforge.client import control_channel
from taskforge.errors import BrokerError, ConfigurationError
from taskforge.limits.acquire import Limiter
from taskforge.protocol.brokers import AsyncBroker
from taskforge.settings import Settings
from taskforge.worker.outcomes import OutcomeWriter, Pending
from taskforge.worker.slots import Running, Slots

log = logging.getLogger("taskforge.worker")

HEARTBEAT_S = 5.0
#: Environment variable overriding the heartbeat interval (s); the TTL is three beats.
HEARTBEAT_ENV = "TASKFORGE_HEARTBEAT"


class Upkeep:
    """The worker's background loops for leases, heartbeat and control (each runs until
    cancelled). ``describe`` gives the heartbeat's content."""

    def __init__(
        self,
        settings: Settings,
        broker: AsyncBroker,
        slots: Slots,
        writer: OutcomeWriter,
        limiter: Limiter,
        *,
        worker_id: str,
        describe: Callable[[], dict[str, Any]],
    ):
        self.settings = settings
        self.broker = broker
        self.slots = slots
        self.writer = writer
        self.limiter = limiter
        self.worker_id = worker_id
        self.describe = describe

    async def lease_loop(self) -> None:
        """Renew every held lease each third of the lease time; abandon lost ones."""
        while True:
            await anyio.sleep(self.settings.lease_s / 3)
            await self.limiter.extend()
            by_queue: dict[str, list[tuple[str, str]]] = {}
            # Jobs whose outcome is not written yet keep their lease too: Redis may be refusing
            # the write (OOM), and a lapsed lease would let another worker run the job again.
            held: list[Running | Pending] = [*self.slots.running.values(), *self.writer.held()]
            for r in held:
                by_queue.setdefault(r.queue, []).append((r.lease.id, r.lease.token))
            for queue, leases in by_queue.items():
                try:
                    lost, cancel = await self.broker.run(self.broker.ops.extend(queue, leases))
                except BrokerError as exc:
                    log.warning("lease renewal failed (%s); retrying", exc)
                    continue
                running = self.slots.running
                for job_id in lost & running.keys():
                    log.warning("job %s lease lost (reclaimed elsewhere); abandoning it", job_id)
                    running[job_id].scope.cancel()
                for job_id in cancel:
                    self.slots.cancel(job_id)

    async def heartbeat_loop(self, interval_s: float) -> None:
        """Say the worker is alive every ``interval_s`` (the key lives three beats)."""
        while True:
            try:
                ttl_s = max(1, math.ceil(interval_s * 3))
                await self.broker.run(
                    self.broker.ops.heartbeat(self.worker_id, self.describe(), ttl_s)
                )
            except BrokerError as exc:
                log.debug("heartbeat failed: %s", exc)
            await anyio.sleep(interval_s)

    async def control_loop(self) -> None:
        """Cancel the running jobs named on the control channel."""
        channel = control_channel(self.settings)
        async for _, job_id in self.broker.subscribe(channel):
            self.slots.cancel(job_id)


def heartbeat_interval_s() -> float:
    """The heartbeat interval: ``TASKFORGE_HEARTBEAT`` seconds, else 5.

    Raises:
        ConfigurationError: the variable is not a positive number.
    """
    raw = os.environ.get(HEARTBEAT_ENV, "").strip()
    try:
        value = float(raw) if raw else HEARTBEAT_S
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(f"{HEARTBEAT_ENV}={raw!r}: expected seconds > 0, e.g. 5")
    return value


__all__ = ["HEARTBEAT_ENV", "HEARTBEAT_S", "Upkeep", "heartbeat_interval_s"]
