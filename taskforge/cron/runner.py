"""The cron scheduler that every worker runs: enqueue each tick of its periodic tasks once.

No leader is needed. Each periodic has a last-tick marker under its queue's hash tag; a scheduler
reads it, works out the due ticks from Redis server time
(:func:`taskforge.cron.schedule.due_ticks`), and claims them with ``cron_tick.lua``, which moves
the marker only if nobody moved it since the read and enqueues the ticks' jobs in the same step.
The loser of a race re-reads the marker and finds nothing left to do. Between ticks the
scheduler sleeps until the next fire time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio

from taskforge.call import Call, Periodic
from taskforge.cron import due_ticks
from taskforge.driver.requests import Op
from taskforge.errors import BrokerError, EnqueueError
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import NewJob

# The logger keeps its name from before the package layout: logging configs name it.
log = logging.getLogger("taskforge.scheduler")

#: Longest sleep between two looks at the clock (re-syncs with Redis server time).
MAX_SLEEP_S = 60.0
#: Claims tried per periodic and pass when other schedulers keep winning the race.
CLAIM_ATTEMPTS = 3

Encoder = Callable[[Call], tuple[str, NewJob]]
Clock = Callable[[], Awaitable[int]]


class Scheduler:
    """Claims due ticks of ``periodics`` and enqueues their jobs.

    ``encode`` turns a call into ``(queue, job)`` (:meth:`taskforge.client.Client.encode`);
    ``clock`` returns epoch ms and defaults to Redis ``TIME`` (tests inject their own).
    """

    def __init__(
        self,
        broker: AsyncBroker,
        periodics: Sequence[Periodic],
        *,
        encode: Encoder,
        clock: Clock | None = None,
    ):
        self.broker = broker
        self.periodics = list(periodics)
        self._encode = encode
        self._clock = clock
        self._markers: dict[str, int | None] = {}
        self._next_ms: dict[str, int] = {}

    async def now_ms(self) -> int:
        """The scheduler's clock: Redis server time unless a clock was injected."""
        if self._clock is not None:
            return await self._clock()
        return await self.broker.run(self.broker.ops.server_time_ms())

    async def run(self) -> None:
        """Run until cancelled: one pass per fire time, sleeping in between."""
        while True:
            try:
                await self.run_once()
                now_ms = await self.now_ms()
            except BrokerError as exc:
                log.warning("cron scheduler cannot reach Redis (%s); retrying in 1s", exc)
                await anyio.sleep(1.0)
                continue
            next_ms = min(self._next_ms.values(), default=now_ms + int(MAX_SLEEP_S * 1000))
            await anyio.sleep(min(MAX_SLEEP_S, max(0.0, (next_ms - now_ms) / 1000) + 0.001))

    async def run_once(self) -> int:
        """Claim every due tick now; returns how many jobs this scheduler enqueued."""
        now_ms = await self.now_ms()
        enqueued = 0
        for periodic in self.periodics:
            enqueued += await self._tick(periodic, now_ms)
            self._next_ms[periodic.name] = periodic.schedule.next_after(now_ms)
        return enqueued

    def next_fire_ms(self, name: str) -> int | None:
        """When periodic ``name`` fires next, as seen by the last pass (None before any)."""
        return self._next_ms.get(name)

    async def _tick(self, periodic: Periodic, now_ms: int) -> int:
        queue = periodic.call.options.queue
        for _ in range(CLAIM_ATTEMPTS):
            if periodic.name not in self._markers:
                found = await self.broker.run(self.broker.ops.cron_markers(queue, [periodic.name]))
                self._markers[periodic.name] = found[periodic.name]
            last_ms = self._markers[periodic.name]
            ticks, marker_ms = due_ticks(periodic.schedule, last_ms, now_ms, periodic.catch_up)
            if marker_ms == last_ms:
                return 0
            try:
                jobs = [(tick_ms, self._job(periodic, tick_ms)) for tick_ms in ticks]
            except EnqueueError as exc:  # e.g. arguments JSON cannot carry: say so every tick
                log.error("cron %s: tick not enqueued: %s", periodic.name, exc)
                return 0
            claimed, current = await self.broker.run(
                self.broker.ops.cron_claim(queue, periodic.name, last_ms, marker_ms, jobs)
            )
            self._markers[periodic.name] = current
            if claimed:
                for tick_ms, job in jobs:
                    log.info("cron %s: enqueued tick %d as job %s", periodic.name, tick_ms, job.id)
                return len(jobs)
        return 0

    def _job(self, periodic: Periodic, tick_ms: int) -> NewJob:
        call = periodic.call
        options = replace(call.options, job_id=periodic.job_id(tick_ms))
        return self._encode(replace(call, options=options, delay_s=0.0, run_at=None))[1]


@dataclass(frozen=True, slots=True)
class PeriodicStatus:
    """What ``taskforge cron`` shows of one periodic task."""

    periodic: Periodic
    last_tick_ms: int | None
    next_fire_ms: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (times as epoch ms)."""
        p = self.periodic
        return {
            "name": p.name,
            "task": p.call.task,
            "queue": p.call.options.queue,
            "cron": p.schedule.expression,
            "timezone": p.schedule.timezone,
            "catch_up": p.catch_up.value,
            "last_tick_ms": self.last_tick_ms,
            "next_fire_ms": self.next_fire_ms,
        }


def cron_status(ops: Ops, periodics: Sequence[Periodic]) -> Op[list[PeriodicStatus]]:
    """Each periodic's last claimed tick and next fire time (Redis server time)."""
    now_ms = yield from ops.server_time_ms()
    by_queue: dict[str, list[str]] = {}
    for p in periodics:
        by_queue.setdefault(p.call.options.queue, []).append(p.name)
    markers: dict[tuple[str, str], int | None] = {}
    for queue, names in by_queue.items():
        found = yield from ops.cron_markers(queue, names)
        markers.update(((queue, n), v) for n, v in found.items())
    out = []
    for p in periodics:
        last = markers[(p.call.options.queue, p.name)]
        out.append(PeriodicStatus(p, last, p.schedule.next_after(max(now_ms, last or 0))))
    return out


__all__ = [
    "CLAIM_ATTEMPTS",
    "MAX_SLEEP_S",
    "Clock",
    "Encoder",
    "PeriodicStatus",
    "Scheduler",
    "cron_status",
]
