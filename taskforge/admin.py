"""The operator's library API: the one the ``taskforge`` CLI and the dashboard both stand on.

:class:`Admin` is blocking (scripts, the CLI); :class:`AsyncAdmin` is its asyncio twin (the
dashboard). Both drive the same request generators (:mod:`taskforge.protocol.inspection`,
:mod:`taskforge.deadletters`, :mod:`taskforge.cron.runner`), so they cannot disagree, and both
work on one Redis, Sentinel and a Cluster. Neither scans the key space.

::

    from taskforge import Admin, DeadFilter

    with Admin.from_url("redis://localhost:6379/0") as admin:
        queue, record = admin.job("3f2a...")            # any queue, by id alone
        admin.listing("emails", offset=0, limit=50)      # ready + scheduled, paged
        admin.dead_requeue(flt=DeadFilter.parse(task="email.*", older_than="1h"))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio

from taskforge.client import Client, control_channel
from taskforge.cron.runner import PeriodicStatus, cron_status
from taskforge.deadletters import (
    DEAD_BATCH,
    DeadFilter,
    DeadJob,
    DeadOps,
    DeadResult,
    DeadSelection,
    OnBatch,
)
from taskforge.driver.requests import Op
from taskforge.errors import ConfigurationError, JobNotFoundError
from taskforge.health import health_check, health_check_once
from taskforge.job import JobRecord, JobStatus
from taskforge.protocol.brokers import AsyncBroker, SyncBroker
from taskforge.protocol.inspection import (
    InspectOps,
    Purged,
    QueueDepth,
    QueueListing,
    Series,
    WorkerInfo,
)
from taskforge.settings import Settings
from taskforge.signing import signing_key
from taskforge.task import Periodic
from taskforge.upgrade import Upgraded, unsigned_moves, upgrade_queue
from taskforge.workflow import WorkflowClient, WorkflowInfo, WorkflowStatus

#: Minutes the overview's rates (jobs per minute) average over.
RATE_WINDOW_MIN = 5


@dataclass(frozen=True, slots=True)
class Overview:
    """Every queue's depths and recent rates, and the last hour's per-minute series."""

    depths: list[QueueDepth]
    series: Series

    def to_json(self) -> dict[str, Any]:
        """Plain data: one row per queue (with ``done_per_min``/``failed_per_min`` over the
        last :data:`RATE_WINDOW_MIN` minutes) and the summed series."""
        rows = []
        for d in self.depths:
            row = d.to_json()
            row["done_per_min"] = self.series.rate(d.queue, "done", RATE_WINDOW_MIN)
            row["failed_per_min"] = self.series.rate(d.queue, "failed", RATE_WINDOW_MIN)
            rows.append(row)
        return {"queues": rows, "series": self.series.to_json()}

    def recent(self, queue: str) -> dict[str, Any]:
        """``queue``'s outcomes over every minute this overview read: ``done``, ``failed`` and
        ``dead`` counts, ``done_per_min`` and ``failed_per_min`` (``taskforge queues``)."""
        points = self.series.per_queue.get(queue, [])
        done, failed, dead = (sum(p.get(k, 0) for p in points) for k in ("done", "failed", "dead"))
        return {
            "window_minutes": len(points),
            "done": done,
            "failed": failed,
            "dead": dead,
            "done_per_min": round(done / max(1, len(points)), 2),
            "failed_per_min": round(failed / max(1, len(points)), 2),
        }


class _Core:
    """The operations both faces share, as request generators."""

    def __init__(self, settings: Settings, ops: Any):
        self.settings = settings
        self.inspect = InspectOps(ops)
        self.dead = DeadOps(ops)
        self.ops = ops

    def overview(self, queues: Sequence[str] | None, minutes: int) -> Op[Overview]:
        names = yield from self.inspect.queue_names(queues)
        depths, series = yield from self.inspect.series(
            names, minutes=minutes, rate_minutes=min(minutes, RATE_WINDOW_MIN)
        )
        return Overview(depths, series)

    def job(self, job_id: str, queue: str | None) -> Op[tuple[str, JobRecord]]:
        found = yield from self.inspect.find(job_id, queue)
        if found is None:
            raise JobNotFoundError(
                f"no job {job_id!r} in any queue (never enqueued, purged, or its record expired)"
            )
        return found

    def cancel(self, job_id: str, queue: str | None) -> Op[JobStatus]:
        where = yield from self.inspect.locate(job_id, queue)
        if where is None:
            raise JobNotFoundError(f"no job {job_id!r} in any queue: nothing to cancel")
        _, status = yield from self.ops.cancel(where, job_id, control_channel(self.settings))
        return JobStatus(status)

    def dead_act(
        self,
        verb: str,
        selection: DeadSelection | None,
        select: dict[str, Any],
        batch: int,
        on_batch: OnBatch | None,
    ) -> Op[DeadResult]:
        if selection is None:
            selection = yield from self.dead_select(**select)
        return (yield from self.dead.apply(verb, selection, batch=batch, on_batch=on_batch))

    def dead_select(
        self,
        queues: Sequence[str] | None = None,
        ids: Sequence[str] = (),
        flt: DeadFilter | None = None,
        every: bool = False,
    ) -> Op[DeadSelection]:
        names = yield from self.inspect.queue_names(queues)
        return (yield from self.dead.select(names, ids=ids, flt=flt, every=every))

    def dead_list(
        self, queues: Sequence[str] | None, flt: DeadFilter, limit: int
    ) -> Op[list[DeadJob]]:
        names = yield from self.inspect.queue_names(queues)
        return (yield from self.dead.scan(names, flt, limit=limit))


class Admin:
    """Blocking operator API (see the module docstring). Close it, or use it as a context."""

    def __init__(self, settings: Settings, *, broker: SyncBroker | None = None):
        self.settings = settings
        self.broker = broker if broker is not None else SyncBroker(settings)
        self._core = _Core(settings, self.broker.ops)

    @classmethod
    def from_url(cls, redis_url: str | None = None, **overrides: Any) -> Admin:
        """An admin for ``redis_url`` (default: ``$REDIS_URL``), other settings from the env."""
        return cls(Settings.from_env(redis_url=redis_url, **overrides))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self.broker.close()

    def queues(self) -> list[str]:
        """Every announced queue name, sorted (``["default"]`` when none yet)."""
        return self.broker.run(self._core.inspect.queue_names())

    def overview(self, queues: Sequence[str] | None = None, *, minutes: int = 60) -> Overview:
        """Depths of ``queues`` (default: all) and their per-minute series."""
        return self.broker.run(self._core.overview(queues, minutes))

    def depths(self, queues: Sequence[str] | None = None) -> list[QueueDepth]:
        """Depths of ``queues`` (default: all), one round trip."""
        names = self.broker.run(self._core.inspect.queue_names(queues))
        return self.broker.run(self._core.inspect.depths(names))

    def listing(self, queue: str, *, offset: int = 0, limit: int = 50) -> QueueListing:
        """A page of ``queue``'s ready and scheduled jobs (``limit`` 1..1000 per section)."""
        return self.broker.run(self._core.inspect.listing(queue, offset=offset, limit=limit))

    def purge_queue(self, queue: str) -> Purged:
        """Take every ready and scheduled job out of ``queue`` at once (one script) and delete
        them; jobs running and dead letters stay."""
        return self.broker.run(self._core.inspect.purge(queue))

    def find(self, job_id: str, *, queue: str | None = None) -> tuple[str, JobRecord] | None:
        """``(queue, record)`` of ``job_id`` in any queue (``queue`` is tried first)."""
        return self.broker.run(self._core.inspect.find(job_id, queue))

    def upgrade_records(self, queues: Sequence[str] | None = None) -> list[Upgraded]:
        """Move the job records of ``queues`` (default: all) that the previous release wrote
        to the compact layout, one script per record; idempotent. Stop the old workers first
        (see :mod:`taskforge.upgrade`)."""
        names = self.broker.run(self._core.inspect.queue_names(queues))
        key = signing_key(self.settings)
        for q in names:
            lost = self.broker.run(unsigned_moves(self.broker.ops, q, key))
            if lost:
                why = (
                    "no signing key is set"
                    if key is None
                    else "the signing key set did not sign them"
                )
                raise ConfigurationError(
                    f"{len(lost)} signed job record(s) in queue {q!r} (e.g. {lost[0]!r}) would "
                    f"lose their signature ({why}) and be refused by the workers: run the upgrade "
                    "with the workers' TASKFORGE_SIGNING_KEY; nothing was moved"
                )
        return [self.broker.run(upgrade_queue(self.broker.ops, q, key)) for q in names]

    def job(self, job_id: str, *, queue: str | None = None) -> tuple[str, JobRecord]:
        """Like :meth:`find`. Raises JobNotFoundError when no queue holds the job."""
        return self.broker.run(self._core.job(job_id, queue))

    def cancel(self, job_id: str, *, queue: str | None = None) -> JobStatus:
        """Cancel a job found by id (see :meth:`JobHandle.cancel`); returns the status seen.

        Raises:
            JobNotFoundError: no queue holds the job.
        """
        return self.broker.run(self._core.cancel(job_id, queue))

    def dead_list(
        self, *, queues: Sequence[str] | None = None, flt: DeadFilter | None = None,
        limit: int = 50,
    ) -> list[DeadJob]:  # fmt: skip
        """Dead jobs matching ``flt``, oldest first (``limit`` 0: all)."""
        return self.broker.run(self._core.dead_list(queues, flt or DeadFilter(), limit))

    def dead_select(
        self, *, ids: Sequence[str] = (), flt: DeadFilter | None = None, every: bool = False,
        queues: Sequence[str] | None = None,
    ) -> DeadSelection:  # fmt: skip
        """The dead jobs a requeue or purge would act on: by ``ids`` (located in ``queues``,
        default all), or the matches of ``flt``, or ``every`` one (``flt`` narrowing it).

        Raises:
            ConfigurationError: neither ids, a filter nor ``every``; or ids with a filter.
        """
        return self.broker.run(self._core.dead_select(queues, ids, flt, every))

    def dead_requeue(
        self, selection: DeadSelection | None = None, *, ids: Sequence[str] = (),
        flt: DeadFilter | None = None, every: bool = False, queues: Sequence[str] | None = None,
        batch: int = DEAD_BATCH, on_batch: OnBatch | None = None,
    ) -> DeadResult:  # fmt: skip
        """Requeue dead jobs with fresh attempts: a ``selection`` from :meth:`dead_select`, or
        one made from the same keywords. Jobs no longer dead are skipped.

        Raises:
            ConfigurationError: neither ids, a filter nor ``every``; or ids with a filter.
        """
        select = {"queues": queues, "ids": ids, "flt": flt, "every": every}
        return self.broker.run(self._core.dead_act("requeue", selection, select, batch, on_batch))

    def dead_purge(
        self, selection: DeadSelection | None = None, *, ids: Sequence[str] = (),
        flt: DeadFilter | None = None, every: bool = False, queues: Sequence[str] | None = None,
        batch: int = DEAD_BATCH, on_batch: OnBatch | None = None,
    ) -> DeadResult:  # fmt: skip
        """Delete dead jobs for good, each only if still dead (selection as
        :meth:`dead_requeue`)."""
        select = {"queues": queues, "ids": ids, "flt": flt, "every": every}
        return self.broker.run(self._core.dead_act("purge", selection, select, batch, on_batch))

    def workers(self) -> list[WorkerInfo]:
        """Live and lost workers (lost: heartbeat expired, forgotten after an hour)."""
        return self.broker.run(self._core.inspect.workers())

    def cron(self, periodics: Sequence[Periodic]) -> list[PeriodicStatus]:
        """Each periodic task's last claimed tick and next fire time."""
        return self.broker.run(cron_status(self.broker.ops, periodics))

    def health(self, queues: list[str] | None = None) -> dict[str, Any]:
        """The health report (:func:`taskforge.health.health_check`); never raises."""
        return anyio.run(functools.partial(health_check_once, AsyncBroker(self.settings),
                                           queues=queues))  # fmt: skip


class AsyncAdmin:
    """The asyncio twin of :class:`Admin` (same methods, awaited)."""

    def __init__(self, settings: Settings, *, broker: AsyncBroker | None = None):
        self.settings = settings
        self.broker = broker if broker is not None else AsyncBroker(settings)
        self._core = _Core(settings, self.broker.ops)
        # Only its read and cancel operations are used, run on this broker: the client
        # behind it never opens a connection.
        self._workflows = WorkflowClient(Client(settings))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the connection pool."""
        await self.broker.aclose()

    async def queues(self) -> list[str]:
        """See :meth:`Admin.queues`."""
        return await self.broker.run(self._core.inspect.queue_names())

    async def overview(self, queues: Sequence[str] | None = None, *, minutes: int = 60) -> Overview:
        """See :meth:`Admin.overview`."""
        return await self.broker.run(self._core.overview(queues, minutes))

    async def listing(self, queue: str, *, offset: int = 0, limit: int = 50) -> QueueListing:
        """See :meth:`Admin.listing`."""
        return await self.broker.run(self._core.inspect.listing(queue, offset=offset, limit=limit))

    async def purge_queue(self, queue: str) -> Purged:
        """See :meth:`Admin.purge_queue`."""
        return await self.broker.run(self._core.inspect.purge(queue))

    async def find(self, job_id: str, *, queue: str | None = None) -> tuple[str, JobRecord] | None:
        """See :meth:`Admin.find`."""
        return await self.broker.run(self._core.inspect.find(job_id, queue))

    async def job(self, job_id: str, *, queue: str | None = None) -> tuple[str, JobRecord]:
        """See :meth:`Admin.job`."""
        return await self.broker.run(self._core.job(job_id, queue))

    async def cancel(self, job_id: str, *, queue: str | None = None) -> JobStatus:
        """See :meth:`Admin.cancel`."""
        return await self.broker.run(self._core.cancel(job_id, queue))

    async def workflow(self, workflow_id: str) -> WorkflowInfo:
        """A workflow's status, tree and members (``app.workflow(id).info()``, awaited).

        Raises:
            WorkflowNotFoundError: never sent, or expired.
        """
        info: WorkflowInfo = await self.broker.run(self._workflows.info_op(workflow_id))
        return info

    async def workflow_cancel(self, workflow_id: str) -> WorkflowStatus:
        """Cancel a whole workflow (``app.workflow(id).cancel()``, awaited); its status now."""
        status: WorkflowStatus = await self.broker.run(self._workflows.cancel_op(workflow_id))
        return status

    async def dead_list(
        self, *, queues: Sequence[str] | None = None, flt: DeadFilter | None = None,
        limit: int = 50,
    ) -> list[DeadJob]:  # fmt: skip
        """See :meth:`Admin.dead_list`."""
        return await self.broker.run(self._core.dead_list(queues, flt or DeadFilter(), limit))

    async def dead_select(
        self, *, ids: Sequence[str] = (), flt: DeadFilter | None = None, every: bool = False,
        queues: Sequence[str] | None = None,
    ) -> DeadSelection:  # fmt: skip
        """See :meth:`Admin.dead_select`."""
        return await self.broker.run(self._core.dead_select(queues, ids, flt, every))

    async def dead_requeue(
        self, selection: DeadSelection | None = None, *, ids: Sequence[str] = (),
        flt: DeadFilter | None = None, every: bool = False, queues: Sequence[str] | None = None,
    ) -> DeadResult:  # fmt: skip
        """See :meth:`Admin.dead_requeue`."""
        select = {"queues": queues, "ids": ids, "flt": flt, "every": every}
        op = self._core.dead_act("requeue", selection, select, DEAD_BATCH, None)
        return await self.broker.run(op)

    async def dead_purge(
        self, selection: DeadSelection | None = None, *, ids: Sequence[str] = (),
        flt: DeadFilter | None = None, every: bool = False, queues: Sequence[str] | None = None,
    ) -> DeadResult:  # fmt: skip
        """See :meth:`Admin.dead_purge`."""
        select = {"queues": queues, "ids": ids, "flt": flt, "every": every}
        op = self._core.dead_act("purge", selection, select, DEAD_BATCH, None)
        return await self.broker.run(op)

    async def workers(self) -> list[WorkerInfo]:
        """See :meth:`Admin.workers`."""
        return await self.broker.run(self._core.inspect.workers())

    async def cron(self, periodics: Sequence[Periodic]) -> list[PeriodicStatus]:
        """See :meth:`Admin.cron`."""
        return await self.broker.run(cron_status(self.broker.ops, periodics))

    async def health(
        self, queues: list[str] | None = None, *, depths: Sequence[QueueDepth] | None = None
    ) -> dict[str, Any]:
        """See :meth:`Admin.health` (on this admin's connection); ``depths`` already read
        (by :meth:`overview`) are used instead of reading them again."""
        return await health_check(self.broker, queues=queues, depths=depths)

    async def record_depths(self, depths: Sequence[QueueDepth]) -> None:
        """Store the queues' current depths in this minute's bucket (for depth charts)."""
        await self.broker.run(self._core.inspect.record_depths(depths))


__all__ = ["RATE_WINDOW_MIN", "Admin", "AsyncAdmin", "Overview"]
