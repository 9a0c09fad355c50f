"""The protocol of the features around jobs: periodic ticks, rate and concurrency limits,
progress reports (each an operation as in :mod:`taskforge.protocol.lifecycle`)."""

from __future__ import annotations

from collections.abc import Sequence

from taskforge.driver.requests import Arg, Batch, Command, Op, ScriptCall
from taskforge.job import JobPriority
from taskforge.protocol.lifecycle import OpsBase
from taskforge.protocol.records import NewJob


class FeatureOps(OpsBase):
    """Cron claims and markers, rate and concurrency slots, progress."""

    def cron_claim(
        self,
        queue: str,
        name: str,
        expected_ms: int | None,
        marker_ms: int,
        ticks: Sequence[tuple[int, NewJob]],
    ) -> Op[tuple[bool, int | None]]:
        """Move periodic ``name``'s last-tick marker from ``expected_ms`` to ``marker_ms`` and
        enqueue the ``(tick_ms, job)`` pairs, atomically.

        Returns (claimed, marker now): ``claimed`` is False, and nothing was written, when another
        scheduler moved the marker first.
        """
        k = self.keys(queue)
        keys = [*k.ready_lists, k.wake, k.job_prefix, k.cron(name)]
        expected = "" if expected_ms is None else expected_ms
        args: list[Arg] = [self.settings.events_channel, queue, expected, marker_ms]
        for tick_ms, job in ticks:
            prio = "" if job.priority is JobPriority.NORMAL else job.priority.value
            args += [job.id, job.task, prio, tick_ms, len(job.fields) // 2, *job.fields]
        raw = yield ScriptCall("cron_tick", keys, args)
        return bool(raw[0]), int(raw[1]) if raw[1] != "" else None

    def cron_markers(self, queue: str, names: Sequence[str]) -> Op[dict[str, int | None]]:
        """Last claimed tick (ms) of each periodic of ``queue`` (None: never scheduled)."""
        if not names:
            return {}
        k = self.keys(queue)
        raw = yield Batch([Command(("GET", k.cron(n))) for n in names])
        return {n: None if v is None else int(v) for n, v in zip(names, raw, strict=True)}

    def rate_acquire(self, task: str, limit: int, window_ms: int) -> Op[int]:
        """Count a start of ``task`` in its current window; 0 = go, else ms to wait."""
        key = self.globals.rate_prefix(task)
        return int((yield ScriptCall("limit_rate", [key], [limit, window_ms])))

    def slot_acquire(self, task: str, job_id: str, limit: int) -> Op[int]:
        """Take a cluster-wide concurrency slot of ``task``; 0 = taken, else ms (a wait hint)."""
        key = self.globals.concurrency(task)
        lease_ms = int(self.settings.lease_s * 1000)
        return int((yield ScriptCall("limit_acquire", [key], [limit, lease_ms, job_id])))

    def slot_extend(self, task: str, job_ids: Sequence[str]) -> Op[int]:
        """Renew running jobs' concurrency slots of ``task`` by one lease; returns how many."""
        key = self.globals.concurrency(task)
        lease_ms = int(self.settings.lease_s * 1000)
        return int((yield ScriptCall("limit_extend", [key], [lease_ms, *job_ids])))

    def slot_release(self, task: str, job_ids: Sequence[str]) -> Op[None]:
        """Give back concurrency slots of ``task``."""
        yield Command(("ZREM", self.globals.concurrency(task), *job_ids))

    def progress(
        self, queue: str, reports: Sequence[tuple[str, str, float, str]]
    ) -> Op[list[bool]]:
        """Store and publish ``(id, token, fraction, message)`` progress of running jobs."""
        args: list[Arg] = [self.settings.events_channel, queue]
        for job_id, token, fraction, message in reports:
            args += [job_id, token, fraction, message]
        raw = yield ScriptCall("progress", [self.keys(queue).job_prefix], args)
        return [bool(x) for x in raw]


__all__ = ["FeatureOps"]
