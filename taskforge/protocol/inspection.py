"""Read and steer queues as an operator: find a job by id alone, list and purge a queue, workers
(lost ones included), per-minute charts.

Each operation is a request generator over the broker's :class:`~taskforge.protocol.ops.Ops`,
like the queue protocol itself, so :class:`~taskforge.admin.Admin` (CLI) and
:class:`~taskforge.admin.AsyncAdmin` (dashboard) drive the very same code. Nothing here scans
the key space: queues are known from the set producers announce them in, and every read is
bounded by the queues, a page, or a batch.

Finding a job by id alone costs no memory per job: the record's key names its queue, so the
lookup asks every known queue at once (one pipelined ``EXISTS`` per queue, one round trip).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskforge.driver.requests import Arg, Batch, Command, Op, ScriptCall
from taskforge.job import PRIORITY_ORDER, JobPriority, JobRecord
from taskforge.protocol.keys import check_queue_name
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import STATUS_OF_LETTER, read_count, scored
from taskforge.protocol.scripts import SOURCES

#: Job records deleted per purge-drain call: each call stays short, so Redis is never blocked.
PURGE_BATCH = 1000
#: Counters of the per-minute buckets the dashboard's charts read.
SERIES_COUNTERS = ("done", "failed", "dead", "depth")
#: A worker whose heartbeat expired this long ago is forgotten (its entry deleted).
FORGET_LOST_AFTER_S = 3600.0
_SUMMARY_SHA = hashlib.sha1(SOURCES["queue_summary"].encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """How many jobs of one queue wait in each place, and its recent outcome rates."""

    queue: str
    ready: dict[str, int]
    scheduled: int
    inflight: int
    dead: int

    @property
    def ready_total(self) -> int:
        """Ready jobs over all priorities."""
        return sum(self.ready.values())

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the dashboard."""
        return {
            "queue": self.queue,
            "ready": dict(self.ready),
            "ready_total": self.ready_total,
            "scheduled": self.scheduled,
            "inflight": self.inflight,
            "dead": self.dead,
        }


@dataclass(frozen=True, slots=True)
class ListedJob:
    """One waiting job in a queue listing: ``at_ms`` is its run-at time when scheduled."""

    id: str
    section: str
    task: str | None
    status: str | None
    attempts: int
    at_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the dashboard."""
        return {"id": self.id, "section": self.section, "task": self.task,
                "status": self.status, "attempts": self.attempts, "at_ms": self.at_ms}  # fmt: skip


@dataclass(frozen=True, slots=True)
class QueueListing:
    """A page of a queue's waiting jobs: each ready priority and the scheduled set, in the
    order they will run, from ``offset`` for at most ``limit`` jobs per section."""

    depth: QueueDepth
    offset: int
    limit: int
    sections: dict[str, list[ListedJob]]

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the dashboard."""
        return {
            **self.depth.to_json(),
            "offset": self.offset,
            "limit": self.limit,
            "sections": {name: [j.to_json() for j in jobs] for name, jobs in self.sections.items()},
        }


@dataclass(frozen=True, slots=True)
class Purged:
    """What a queue purge took out: ready jobs per priority and scheduled jobs."""

    queue: str
    ready: dict[str, int]
    scheduled: int
    records_deleted: int

    @property
    def total(self) -> int:
        """Jobs taken out of the queue."""
        return sum(self.ready.values()) + self.scheduled


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker's last heartbeat; ``lost`` when it stopped beating without signing off."""

    id: str
    lost: bool
    info: dict[str, Any]

    @property
    def last_seen(self) -> float:
        """Epoch seconds of its last heartbeat."""
        return float(self.info.get("last_seen", 0.0))

    def to_json(self) -> dict[str, Any]:
        """The heartbeat, with ``lost``."""
        return {**self.info, "id": self.id, "lost": self.lost}


@dataclass(frozen=True, slots=True)
class Series:
    """Per-minute counters, summed over queues: ``points[i]`` is minute ``first_minute + i``."""

    first_minute: int
    points: list[dict[str, int]] = field(default_factory=list)
    per_queue: dict[str, list[dict[str, int]]] = field(default_factory=dict)

    def rate(self, queue: str, counter: str, minutes: int) -> float:
        """Average per minute of ``counter`` of ``queue`` over its last ``minutes`` buckets."""
        points = self.per_queue.get(queue, [])[-minutes:]
        return round(sum(p.get(counter, 0) for p in points) / max(1, len(points)), 2)

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` and the dashboard."""
        return {"first_minute": self.first_minute, "points": self.points}


class InspectOps:
    """The admin operations as request generators over :class:`~taskforge.protocol.ops.Ops`."""

    def __init__(self, ops: Ops):
        self.ops = ops

    # ---------------------------------------------------------------- queues

    def queue_names(self, wanted: Sequence[str] | None = None) -> Op[list[str]]:
        """``wanted`` (checked, deduplicated), else every announced queue (else ``default``)."""
        if wanted:
            return [check_queue_name(q) for q in dict.fromkeys(wanted)]
        known = yield from self.ops.known_queues()
        return known or ["default"]

    def depths(self, queues: Sequence[str]) -> Op[list[QueueDepth]]:
        """Depths of many queues in one round trip (six O(1) commands per queue)."""
        cmds: list[Command] = []
        for q in queues:
            k = self.ops.keys(q)
            cmds += [Command(("LLEN", key)) for key in k.ready_lists]
            cmds += [Command(("ZCARD", key)) for key in (k.scheduled, k.inflight, k.dead)]
        raw = (yield Batch(cmds)) if cmds else []
        out = []
        for i, q in enumerate(queues):
            n = [int(x) for x in raw[i * 6 : i * 6 + 6]]
            ready = {p.value: c for p, c in zip(PRIORITY_ORDER, n[:3], strict=True)}
            out.append(QueueDepth(q, ready, n[3], n[4], n[5]))
        return out

    def listing(self, queue: str, *, offset: int = 0, limit: int = 50) -> Op[QueueListing]:
        """A page of ``queue``'s ready (per priority) and scheduled jobs, in run order."""
        check_queue_name(queue)
        if offset < 0 or not 1 <= limit <= 1000:
            raise ValueError("offset must be >= 0 and limit between 1 and 1000")
        k = self.ops.keys(queue)
        stop = offset + limit - 1
        cmds = [Command(("LRANGE", key, offset, stop)) for key in k.ready_lists]
        cmds.append(Command(("ZRANGE", k.scheduled, offset, stop, "WITHSCORES")))
        raw = yield Batch(cmds)
        (depth,) = yield from self.depths([queue])
        placed: list[tuple[str, str, int | None]] = []
        for p, ids in zip(PRIORITY_ORDER, raw[:3], strict=True):
            placed += [(p.value, i, None) for i in ids]
        placed += [("scheduled", i, int(s)) for i, s in scored(raw[3])]
        fields = yield from self._brief([i for _, i, _ in placed], queue)
        sections: dict[str, list[ListedJob]] = {p.value: [] for p in PRIORITY_ORDER}
        sections["scheduled"] = []
        for (section, job_id, at_ms), f in zip(placed, fields, strict=True):
            attempts = read_count(f[2] or "0") or 0  # damaged: 0, as the job's own page says
            status = STATUS_OF_LETTER.get(f[1] or "")
            word = status.value if status else f[1]
            sections[section].append(ListedJob(job_id, section, f[0], word, attempts, at_ms))
        return QueueListing(depth, offset, limit, sections)

    def _brief(self, job_ids: Sequence[str], queue: str) -> Op[list[list[str | None]]]:
        # Three small fields per job, never the envelope: a page of big payloads stays cheap.
        if not job_ids:
            return []
        k = self.ops.keys(queue)
        cmds = [Command(("HMGET", k.job(i), "t", "s", "n")) for i in job_ids]
        return list((yield Batch(cmds)))

    def purge(self, queue: str, *, batch: int = PURGE_BATCH) -> Op[Purged]:
        """Take every ready and scheduled job out of ``queue`` at once, then delete their
        records a batch at a time (also finishing any purge an earlier caller left undone)."""
        k = self.ops.keys(check_queue_name(queue))
        token = os.urandom(8).hex()
        keys = [*k.ready_lists, k.scheduled, f"{k.base}:purges", f"{k.base}:purged:"]
        raw = yield ScriptCall("purge_queue", keys, [token])
        deleted = yield from self.drain_purged(queue, batch=batch)
        ready = {p.value: int(n) for p, n in zip(PRIORITY_ORDER, raw[:3], strict=True)}
        return Purged(queue, ready, int(raw[3]), deleted)

    def drain_purged(self, queue: str, *, batch: int = PURGE_BATCH) -> Op[int]:
        """Delete the records of purged jobs still waiting in graveyards; returns how many."""
        k = self.ops.keys(queue)
        keys = [f"{k.base}:purges", f"{k.base}:purged:", k.job_prefix]
        total = 0
        while True:
            deleted, waiting = yield ScriptCall("purge_drain", keys, [batch])
            total += int(deleted)
            if int(waiting) == 0 or int(deleted) == 0:
                return total

    # ---------------------------------------------------------------- jobs

    def locate(self, job_id: str, queue: str | None = None) -> Op[str | None]:
        """The queue that holds ``job_id`` (``queue`` first when given); None: no such job."""
        if queue is not None:
            found = yield from self.ops.locate(job_id, [check_queue_name(queue)])
            if found:
                return found
        names = yield from self.queue_names()
        return (yield from self.ops.locate(job_id, [q for q in names if q != queue]))

    def find(self, job_id: str, queue: str | None = None) -> Op[tuple[str, JobRecord] | None]:
        """``(queue, record)`` of ``job_id`` in any queue; None when there is no such job."""
        where = yield from self.locate(job_id, queue)
        if where is None:
            return None
        record = yield from self.ops.record(where, job_id)
        return None if record is None else (where, record)

    # ---------------------------------------------------------------- workers

    def workers(self, *, forget_after_s: float = FORGET_LOST_AFTER_S) -> Op[list[WorkerInfo]]:
        """Every worker with a heartbeat entry: live ones, and lost ones (their liveness key
        expired: killed, or cut off) until ``forget_after_s`` after their last beat."""
        g = self.ops.globals
        entries: dict[str, str] = yield Command(("HGETALL", g.workers))
        ids = sorted(entries)
        if not ids:
            return []
        alive = yield Batch([Command(("EXISTS", g.worker(w))) for w in ids])
        now_s = (yield from self.ops.server_time_ms()) / 1000
        out, forget = [], []
        for w, ok in zip(ids, alive, strict=True):
            info = _json_dict(entries[w])
            lost = not ok
            if lost and now_s - float(info.get("last_seen", 0)) > forget_after_s:
                forget.append(w)
                continue
            out.append(WorkerInfo(w, lost, info))
        if forget:
            yield Command(("HDEL", g.workers, *forget))
        return out

    # ---------------------------------------------------------------- charts

    def series(
        self, queues: Sequence[str], *, minutes: int = 60, rate_minutes: int = 5
    ) -> Op[tuple[list[QueueDepth], Series]]:
        """Depths of ``queues``, with their per-minute counters (done, failed, dead, depth)
        over the last ``rate_minutes``, and every queue's together over the last ``minutes``.

        One script call for the totals and one per queue, in two round trips: the cost grows
        with the queues times ``rate_minutes``, never with the jobs.
        """
        now_min = (yield from self.ops.server_time_ms()) // 60_000
        names = list(SERIES_COUNTERS)
        # The first call loads its script if Redis lost it; the per-queue calls share one
        # pipeline (queue_summary is loaded by the same check, right before, in _ensure).
        totals = yield ScriptCall(
            "stats_series", [self.ops.globals.stats], [now_min - minutes + 1, minutes, *names]
        )
        args: list[Arg] = [now_min - rate_minutes + 1, rate_minutes, *names]
        replies = yield from self._summaries(queues, args)
        depths, per_queue = [], {}
        for q, raw in zip(queues, replies, strict=True):
            n = [int(x) for x in raw[:6]]
            ready = {p.value: c for p, c in zip(PRIORITY_ORDER, n[:3], strict=True)}
            depths.append(QueueDepth(q, ready, n[3], n[4], n[5]))
            per_queue[q] = _points(names, raw[6:])
        return depths, Series(now_min - minutes + 1, _points(names, totals), per_queue)

    def _summaries(self, queues: Sequence[str], args: list[Arg]) -> Op[list[list[int]]]:
        if not queues:
            return []
        calls = []
        for q in queues:
            k = self.ops.keys(q)
            keys = [*k.ready_lists, k.scheduled, k.inflight, k.dead, k.stats]
            calls.append(ScriptCall("queue_summary", keys, args))
        # The first as a script call (it loads the script if Redis lost it), the rest pipelined
        # as EVALSHA: one round trip for any number of queues.
        first = yield calls[0]
        rest = [Command(("EVALSHA", _SUMMARY_SHA, len(c.keys), *c.keys, *c.args))
                for c in calls[1:]]  # fmt: skip
        return [first, *((yield Batch(rest)) if rest else [])]

    def record_depths(self, depths: Sequence[QueueDepth], ttl_s: int = 3600) -> Op[None]:
        """Store each queue's current ready+scheduled depth, and their sum, in this minute's
        buckets, so the charts can draw depth over time (the dashboard samples once a minute)."""
        now_min = (yield from self.ops.server_time_ms()) // 60_000
        cmds: list[Command] = []
        keyed = [(f"{self.ops.keys(d.queue).stats}:{now_min}", d.ready_total + d.scheduled)
                 for d in depths]  # fmt: skip
        keyed.append((f"{self.ops.globals.stats}:{now_min}", sum(n for _, n in keyed)))
        for key, n in keyed:
            cmds += [Command(("HSET", key, "depth", n)), Command(("EXPIRE", key, ttl_s))]
        yield Batch(cmds)


def _points(names: list[str], raw: list[int]) -> list[dict[str, int]]:
    width = len(names)
    return [dict(zip(names, map(int, raw[i : i + width]), strict=True))
            for i in range(0, len(raw), width)]  # fmt: skip


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


#: Type of a callback told how many jobs a long operation has handled so far.
Progress = Callable[[int], None]

__all__ = [
    "InspectOps",
    "JobPriority",
    "ListedJob",
    "Purged",
    "QueueDepth",
    "QueueListing",
    "Series",
    "WorkerInfo",
]
