"""The state around the queues: counts, workers' heartbeats, node info, known queues, the dead
set, per-minute outcome counters (each an operation as in :mod:`taskforge.protocol.lifecycle`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from taskforge.driver import nodes
from taskforge.driver.requests import Batch, Command, Op
from taskforge.job import PRIORITY_ORDER, JobRecord
from taskforge.protocol.lifecycle import OpsBase
from taskforge.protocol.records import QueueCounts, parse_record, scored


class StateOps(OpsBase):
    """Reads and upkeep of queue-wide and worker-wide state (the CLI's, metrics', workers')."""

    def counts(self, queue: str) -> Op[QueueCounts]:
        """Ready (per priority), scheduled, in-flight and dead counts of ``queue``."""
        k = self.keys(queue)
        cmds = [Command(("LLEN", key)) for key in k.ready_lists]
        cmds += [Command(("ZCARD", key)) for key in (k.scheduled, k.inflight, k.dead)]
        raw = yield Batch(cmds)
        ready = dict(zip(PRIORITY_ORDER, (int(x) for x in raw[:3]), strict=True))
        return QueueCounts(queue, ready, int(raw[3]), int(raw[4]), int(raw[5]))

    def hurry(self, queue: str) -> Op[int]:
        """Make every scheduled job of ``queue`` due now; returns how many (testing mode only).

        One command (scores times 0), so a job cannot be promoted twice or missed.
        """
        k = self.keys(queue).scheduled
        return int((yield Command(("ZUNIONSTORE", k, 1, k, "WEIGHTS", 0))))

    def heartbeat(self, worker_id: str, info: dict[str, Any], ttl_s: int) -> Op[None]:
        """Publish a worker's liveness and stats; the per-worker key expires after ``ttl_s``."""
        g = self.globals
        text = json.dumps(info, separators=(",", ":"))
        yield Batch(
            [
                Command(("HSET", g.workers, worker_id, text)),
                Command(("SET", g.worker(worker_id), text, "EX", ttl_s)),
            ]
        )

    def forget_worker(self, worker_id: str) -> Op[None]:
        """Remove a stopping worker's heartbeat."""
        g = self.globals
        yield Batch(
            [Command(("HDEL", g.workers, worker_id)), Command(("DEL", g.worker(worker_id)))]
        )

    def workers(self) -> Op[list[dict[str, Any]]]:
        """Live workers (whose heartbeat key has not expired); prunes the dead from the hash."""
        g = self.globals
        entries: dict[str, str] = yield Command(("HGETALL", g.workers))
        ids = sorted(entries)
        if not ids:
            return []
        alive = yield Batch([Command(("EXISTS", g.worker(w))) for w in ids])
        dead = [w for w, ok in zip(ids, alive, strict=True) if not ok]
        if dead:
            yield Command(("HDEL", g.workers, *dead))
        return [json.loads(entries[w]) for w, ok in zip(ids, alive, strict=True) if ok]

    def node_infos(self) -> Op[dict[str, dict[str, Any]]]:
        """``INFO`` of every primary (see :func:`taskforge.driver.nodes.node_infos`)."""
        return nodes.node_infos()

    def node_configs(self, name: str) -> Op[dict[str, str | None]]:
        """One ``CONFIG GET`` value of every primary (see :mod:`taskforge.driver.nodes`)."""
        return nodes.node_configs(name)

    def announce_queue(self, queue: str) -> Op[None]:
        """Remember a queue name so the CLI can list queues without scanning."""
        yield Command(("SADD", self.globals.queues, queue))

    def known_queues(self) -> Op[list[str]]:
        """Queue names ever announced."""
        return sorted((yield Command(("SMEMBERS", self.globals.queues))))

    def dead_ids(self, queue: str, start: int = 0, stop: int = -1) -> Op[list[tuple[str, int]]]:
        """Dead-lettered ``(id, buried_at_ms)``, oldest first."""
        k = self.keys(queue)
        raw = yield Command(("ZRANGE", k.dead, start, stop, "WITHSCORES"))
        return [(member, int(score)) for member, score in scored(raw)]

    def server_time_ms(self) -> Op[int]:
        """Redis server time in ms (the clock dead-letter ages and stat buckets are read with)."""
        raw = yield Command(("TIME",))
        return int(raw[0]) * 1000 + int(raw[1]) // 1000

    def records(self, queue: str, job_ids: Sequence[str]) -> Op[list[JobRecord | None]]:
        """Read many job records in one round trip (None for each that does not exist)."""
        if not job_ids:
            return []
        k = self.keys(queue)
        raw = yield Batch([Command(("HGETALL", k.job(i))) for i in job_ids])
        return [parse_record(i, r, queue) if r else None for i, r in zip(job_ids, raw, strict=True)]

    def locate(self, job_id: str, queues: Sequence[str]) -> Op[str | None]:
        """The first of ``queues`` that holds a record for ``job_id`` (None: no such job)."""
        if not queues:
            return None
        raw = yield Batch([Command(("EXISTS", self.keys(q).job(job_id))) for q in queues])
        return next((q for q, found in zip(queues, raw, strict=True) if found), None)

    def count_outcomes(
        self, minute: int, counts: Mapping[str, Mapping[str, int]], ttl_s: int = 3600
    ) -> Op[None]:
        """Add ``{queue: {counter: n}}`` to per-queue counters of one epoch minute, and their
        sums to the all-queues counters of that minute (the dashboard's charts).

        Each minute is its own small hash (``<stats>:<minute>``) that expires after ``ttl_s``,
        so old buckets clean themselves up without a sweeper.
        """
        cmds: list[Command] = []
        totals: dict[str, int] = {}
        for queue, named in counts.items():
            key = f"{self.keys(queue).stats}:{minute}"
            cmds += [Command(("HINCRBY", key, name, n)) for name, n in named.items() if n]
            cmds.append(Command(("EXPIRE", key, ttl_s)))
            for name, n in named.items():
                totals[name] = totals.get(name, 0) + n
        if cmds:
            key = f"{self.globals.stats}:{minute}"
            cmds += [Command(("HINCRBY", key, name, n)) for name, n in totals.items() if n]
            cmds.append(Command(("EXPIRE", key, ttl_s)))
            yield Batch(cmds)

    def recent_outcomes(self, queue: str, minutes: Sequence[int]) -> Op[dict[str, int]]:
        """Per-minute counters of ``queue`` summed over the epoch ``minutes`` given."""
        if not minutes:
            return {}
        stats = self.keys(queue).stats
        raw = yield Batch([Command(("HGETALL", f"{stats}:{m}")) for m in minutes])
        total: dict[str, int] = {}
        for bucket in raw:
            for name, n in bucket.items():
                total[name] = total.get(name, 0) + int(n)
        return total

    def dead_members(self, queue: str, job_ids: Sequence[str]) -> Op[list[str]]:
        """The ids among ``job_ids`` that are in ``queue``'s dead set right now."""
        if not job_ids:
            return []
        raw = yield Command(("ZMSCORE", self.keys(queue).dead, *job_ids))
        return [i for i, score in zip(job_ids, raw, strict=True) if score is not None]


__all__ = ["StateOps"]
