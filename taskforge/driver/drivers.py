"""The only code that issues Redis commands for the queue.

Each queue operation is written once, as a generator that yields what to send (a Lua script call,
a command, or a pipeline of commands) and returns the parsed answer. :class:`SyncBroker` and
:class:`AsyncBroker` drive the same operations over redis-py's blocking and asyncio clients, so
the producer API can be synchronous without a second copy of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Generic, TypeVar

import anyio
import redis
import redis.asyncio
from redis.commands.core import AsyncScript, Script

from taskforge.driver.connection import (
    AsyncRedis,
    SyncRedis,
    async_client,
    async_same_node,
    is_cluster,
    routable,
    same_node,
    sync_client,
)
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerOutOfMemoryError,
    NotReplicatedError,
)
from taskforge.job import PRIORITY_ORDER, JobPriority, JobRecord, JobStatus
from taskforge.protocol.keys import GlobalKeys, QueueKeys
from taskforge.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
Arg = str | int | float


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """One Lua script invocation."""

    name: str
    keys: Sequence[str]
    args: Sequence[Arg]


@dataclass(frozen=True, slots=True)
class Command:
    """One plain Redis command."""

    args: tuple[Arg, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent together in one round trip (a non-transactional pipeline)."""

    commands: Sequence[Command]


@dataclass(frozen=True, slots=True)
class Replicated:
    """A script call, a write to ``marker``, then ``WAIT replicas timeout_ms``, on one connection.

    ``WAIT`` counts replicas that have this connection's last write; the marker write makes that
    the current end of the stream even when the script wrote nothing (a duplicate id, written
    earlier, maybe by another connection). The reply is the script's; the drivers raise
    :class:`NotReplicatedError` when fewer than ``replicas`` replicas acknowledged in time.
    """

    call: ScriptCall
    marker: str
    replicas: int
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class WakeThenCall:
    """``BZPOPMIN wake_keys timeout``, then a script call, sent together on one connection.

    Redis runs the script the moment the blocking pop returns (woken or timed out), so an idle
    worker's fetch costs no round trip after the wake. The reply is the script's.
    Where a blocking command cannot share a pipeline (a cluster client, the embedded server)
    the drivers send the two one after the other.
    """

    wake_keys: Sequence[str]
    timeout_s: float
    call: ScriptCall


@dataclass(frozen=True, slots=True)
class EveryPrimary:
    """One command sent to every primary (a cluster's, or the one server); the reply is
    ``{node: reply}`` (the node is ``host:port`` on a cluster, ``""`` otherwise)."""

    command: Command


Request = ScriptCall | Command | Batch | Replicated | WakeThenCall | EveryPrimary
#: A queue operation: yields requests, receives their replies, returns its result.
Op = Generator[Request, Any, T]

SCRIPT_NAMES = (
    "enqueue", "fetch", "finish", "retry", "requeue", "extend", "watch", "cancel", "revive",
    "cron_tick", "limit_rate", "limit_acquire", "limit_extend", "progress",
    "wf_create", "wf_advance", "wf_cancel", "wf_outbox",
    # The admin API's (taskforge.protocol.inspection, taskforge.deadletters).
    "purge_queue", "purge_drain", "purge_dead", "stats_series", "queue_summary",
)  # fmt: skip


def _load_sources() -> dict[str, str]:
    folder = resources.files("taskforge.protocol") / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {
        name: _with_prelude(prelude, (folder / f"{name}.lua").read_text()) for name in SCRIPT_NAMES
    }


def _with_prelude(prelude: str, body: str) -> str:
    # A script's '#!lua flags=...' line (Redis 7 script flags) must stay the first line.
    if body.startswith("#!"):
        shebang, _, rest = body.partition("\n")
        return f"{shebang}\n{prelude}{rest}"
    return prelude + body


def _without_shebang(source: str) -> str:
    # The embedded server (fakeredis) reads no script flags and cannot parse the line.
    return source.partition("\n")[2] if source.startswith("#!") else source


SOURCES = _load_sources()
#: The scripts for ``memory://``: the same, without the flags line (it has no maxmemory).
MEMORY_SOURCES = {name: _without_shebang(source) for name, source in SOURCES.items()}


# --------------------------------------------------------------------------- request payloads


@dataclass(frozen=True, slots=True)
class NewJob:
    """What enqueue needs of one job; ``envelope`` is its encoded :class:`~taskforge.job.Job`."""

    id: str
    task: str
    priority: JobPriority
    envelope: str
    delay_ms: int = 0
    at_ms: int = -1
    unique_key: str = ""
    unique_until: str = "running"
    unique_ttl_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Enqueue's answer for one job: ``created`` is False for a duplicate (``id`` is the holder)."""

    id: str
    status: JobStatus
    created: bool


@dataclass(frozen=True, slots=True)
class Leased:
    """A job handed to this worker: its raw envelope and the lease token that fences its outcome."""

    id: str
    envelope: str
    token: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Fetched:
    """Fetch's answer: leased jobs, and ms until the next scheduled job and lease expiry."""

    jobs: list[Leased]
    next_due_ms: int | None
    next_lease_ms: int | None


@dataclass(frozen=True, slots=True)
class Outcome:
    """A final outcome for :meth:`Ops.finish`."""

    id: str
    token: str
    status: JobStatus
    result_json: str = ""
    error_type: str = ""
    error: str = ""
    traceback: str = ""
    ttl_s: int | None = None  # how long a succeeded/cancelled record lives (None: settings')
    duration_ms: int = 0  # the run's, as the worker measured it (for the event)


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many jobs of one queue are in each place."""

    queue: str
    ready: dict[JobPriority, int] = field(default_factory=dict)
    scheduled: int = 0
    inflight: int = 0
    dead: int = 0

    @property
    def ready_total(self) -> int:
        """Ready jobs over all priorities."""
        return sum(self.ready.values())


# --------------------------------------------------------------------------- the operations


class Ops:
    """The queue protocol: every operation as a generator of requests (see module docstring)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.globals = GlobalKeys(settings.prefix)
        self._keys: dict[str, QueueKeys] = {}

    def keys(self, queue: str) -> QueueKeys:
        """The keys of ``queue`` (cached)."""
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys(self.settings.prefix, queue)
        return k

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> Op[list[Enqueued]]:
        """Create jobs in ``queue``; duplicates (same id or held unique key) write nothing."""
        k = self.keys(queue)
        # A fresh token per call: redis-py's retry and the overlapped stream re-send this same
        # call after a lost reply, and the script knows the jobs it wrote the first time.
        args: list[Arg] = [self.settings.events_channel, queue, os.urandom(8).hex()]
        for j in jobs:
            args += [j.id, j.task, j.priority.value, j.envelope, j.delay_ms, j.at_ms]
            args += [j.unique_key, j.unique_until, j.unique_ttl_s]
        keys = [*k.ready_lists, k.scheduled, k.wake, k.job_prefix, k.base + ":unique:"]
        call = ScriptCall("enqueue", keys, args)
        if self.settings.durable_enqueue:
            timeout_ms = int(self.settings.durable_timeout_s * 1000)
            raw = yield Replicated(call, k.durable, 1, timeout_ms)
        else:
            raw = yield call
        out = []
        for i in range(0, len(raw), 2):
            flag = raw[i + 1]
            holder = flag.split(":", 1)[1] if flag != "new" else jobs[i // 2].id
            out.append(Enqueued(holder, JobStatus(raw[i]), flag == "new"))
        return out

    def fetch(
        self,
        queue: str,
        count: int,
        worker_id: str,
        *,
        batch: int = 1000,
        request_id: str = "",
        answered_id: str = "",
    ) -> Op[Fetched]:
        """Promote due jobs, reclaim expired leases, and lease up to ``count`` ready jobs.

        ``request_id`` makes the call safe to send again: a second call with the id of one whose
        reply was lost returns that call's leases (those it still holds) and leases nothing
        new. ``answered_id`` names an earlier request whose reply arrived, to forget it.
        """
        call = self._fetch_call(queue, count, worker_id, batch, request_id, answered_id)
        return _fetched((yield call))

    def _fetch_call(
        self, queue: str, count: int, worker_id: str, batch: int, request_id: str, answered_id: str
    ) -> ScriptCall:
        k = self.keys(queue)
        s = self.settings
        keys = [*k.ready_lists, k.scheduled, k.inflight, k.wake, k.dead, k.job_prefix, k.fetched]
        keys.append(k.base + ":wf_outbox")  # a member buried here advances its workflow
        args: list[Arg] = [count, int(s.lease_s * 1000), worker_id, s.events_channel, queue]
        args += [batch, s.max_deliveries, request_id, answered_id]
        return ScriptCall("fetch", keys, args)

    def wait_then_fetch(
        self,
        queue: str,
        count: int,
        worker_id: str,
        timeout_s: float,
        *,
        batch: int = 1000,
        request_id: str = "",
        answered_id: str = "",
    ) -> Op[Fetched]:
        """Block until a producer touches the wake marker (or the worker's own stop marker, or
        the timeout), then :meth:`fetch` at once, without another round trip."""
        k = self.keys(queue)
        call = self._fetch_call(queue, count, worker_id, batch, request_id, answered_id)
        return _fetched(
            (yield WakeThenCall((k.wake, k.stop(worker_id)), max(0.001, timeout_s), call))
        )

    def unblock(self, queues: Sequence[str], worker_id: str) -> Op[None]:
        """Wake the worker's own idle :meth:`wait_then_fetch` calls (its shutdown)."""
        cmds = []
        for queue in queues:
            key = self.keys(queue).stop(worker_id)
            cmds += [Command(("ZADD", key, 0, "stop")), Command(("PEXPIRE", key, 60_000))]
        yield Batch(cmds)

    def finish(self, queue: str, outcomes: Sequence[Outcome]) -> Op[list[bool]]:
        """Record final outcomes; False for each one refused (stale lease token).

        True also for an outcome this lease already recorded with the same status (a re-send
        after a lost reply), which changes nothing.
        """
        k = self.keys(queue)
        # One script call per record TTL (the script takes one): nearly always a single call.
        by_ttl: dict[int, list[int]] = {}
        for i, o in enumerate(outcomes):
            by_ttl.setdefault(o.ttl_s or self.settings.result_ttl_s, []).append(i)
        accepted = [False] * len(outcomes)
        for ttl_s, indexes in by_ttl.items():
            args: list[Arg] = [self.settings.events_channel, queue, ttl_s]
            for o in (outcomes[i] for i in indexes):
                args += [o.id, o.token, o.status.value, o.result_json, o.error_type, o.error]
                args += [o.traceback, o.duration_ms]
            keys = [k.inflight, k.dead, k.job_prefix, k.base + ":wf_outbox"]
            raw = yield ScriptCall("finish", keys, args)
            for i, x in zip(indexes, raw, strict=True):
                accepted[i] = bool(x)
        return accepted

    def retry(
        self,
        queue: str,
        job_id: str,
        token: str,
        delay_ms: int,
        error: tuple[str, str, str],
        duration_ms: int = 0,
    ) -> Op[bool]:
        """Schedule a failed job's next attempt after ``delay_ms``; ``error`` = (type, msg, tb).

        ``duration_ms`` (the failed run's) goes into the ``retrying`` event."""
        k = self.keys(queue)
        keys = [k.inflight, k.scheduled, k.wake, k.job(job_id)]
        args: list[Arg] = [self.settings.events_channel, queue, job_id, token, delay_ms, *error]
        args.append(duration_ms)
        return bool((yield ScriptCall("retry", keys, args)))

    def requeue(
        self, queue: str, leases: Sequence[tuple[str, str]], delay_ms: int = 0
    ) -> Op[list[bool]]:
        """Hand leased ``(id, token)`` jobs back unrun: at once to the front, or after a delay."""
        k = self.keys(queue)
        keys = [*k.ready_lists, k.inflight, k.scheduled, k.wake, k.job_prefix]
        args: list[Arg] = [self.settings.events_channel, queue, delay_ms]
        for job_id, token in leases:
            args += [job_id, token]
        raw = yield ScriptCall("requeue", keys, args)
        return [bool(x) for x in raw]

    def extend(
        self, queue: str, leases: Sequence[tuple[str, str]]
    ) -> Op[tuple[set[str], set[str]]]:
        """Renew leases; returns (ids this worker no longer owns, ids whose cancel was asked)."""
        k = self.keys(queue)
        args: list[Arg] = [int(self.settings.lease_s * 1000)]
        for job_id, token in leases:
            args += [job_id, token]
        raw = yield ScriptCall("extend", [k.inflight, k.job_prefix], args)
        return set(raw[0]), set(raw[1])

    def watch(self, queue: str, job_id: str) -> Op[JobStatus | None]:
        """Register a result waiter and read the status (None: no such job)."""
        raw = yield ScriptCall("watch", [self.keys(queue).job(job_id)], [])
        return None if raw is None else JobStatus(raw)

    def wait_done(self, queue: str, job_id: str, timeout_s: float) -> Op[bool]:
        """Block until the job's done marker appears (True) or the timeout passes (False).

        BLMOVE from the list onto itself leaves the marker in place for other waiters.
        """
        done = self.keys(queue).done(job_id)
        raw = yield Command(("BLMOVE", done, done, "LEFT", "RIGHT", timeout_s))
        return raw is not None

    def cancel(self, queue: str, job_id: str, control_channel: str) -> Op[tuple[str, str]]:
        """Cancel a waiting job, or flag a running one; returns (outcome, status)."""
        k = self.keys(queue)
        keys = [*k.ready_lists, k.scheduled, k.job(job_id), k.base + ":wf_outbox"]
        args: list[Arg] = [self.settings.events_channel, queue, job_id]
        args += [self.settings.result_ttl_s, control_channel]
        raw = yield ScriptCall("cancel", keys, args)
        return str(raw[0]), str(raw[1])

    def revive(self, queue: str, job_ids: Sequence[str]) -> Op[int]:
        """Move dead jobs back to their ready lists; returns how many moved."""
        k = self.keys(queue)
        keys = [*k.ready_lists, k.dead, k.wake, k.job_prefix]
        return int(
            (yield ScriptCall("revive", keys, [self.settings.events_channel, queue, *job_ids]))
        )

    def record(self, queue: str, job_id: str) -> Op[JobRecord | None]:
        """Read a job's record (None when it does not exist)."""
        raw = yield Command(("HGETALL", self.keys(queue).job(job_id)))
        return parse_record(job_id, raw) if raw else None

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
        """``INFO`` of every primary: ``{node: info}`` (one entry, ``""``, off a cluster)."""
        raw = yield EveryPrimary(Command(("INFO",)))
        return {node: dict(info) for node, info in raw.items()}

    def node_configs(self, name: str) -> Op[dict[str, str | None]]:
        """One ``CONFIG GET`` value of every primary (None where unknown)."""
        raw = yield EveryPrimary(Command(("CONFIG", "GET", name)))
        return {node: _config_value(reply, name) for node, reply in raw.items()}

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
        return [(member, int(score)) for member, score in _scored(raw)]

    def purge_dead(self, queue: str, job_ids: Sequence[str]) -> Op[int]:
        """Delete dead jobs for good (records and dead-set entries)."""
        k = self.keys(queue)
        if not job_ids:
            return 0
        raw = yield Batch(
            [Command(("ZREM", k.dead, *job_ids)), Command(("UNLINK", *map(k.job, job_ids)))]
        )
        return int(raw[0])

    # ---------------------------------------------------------------- cron, limits, progress

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
            args += [job.id, job.task, job.priority.value, job.envelope, tick_ms]
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

    # ---------------------------------------------------------------- operations (CLI, metrics)

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
        return [parse_record(i, r) if r else None for i, r in zip(job_ids, raw, strict=True)]

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


def _config_value(reply: Any, name: str) -> str | None:
    return reply.get(name) if isinstance(reply, dict) else None


def _fetched(raw: list[Any]) -> Fetched:
    jobs = [
        Leased(raw[i], raw[i + 1], str(raw[i + 2]), int(raw[i + 3])) for i in range(2, len(raw), 4)
    ]
    return Fetched(jobs, _ms(raw[0]), _ms(raw[1]))


def _scored(raw: list[Any]) -> list[tuple[str, float]]:
    # redis-py 8 answers WITHSCORES as [member, score] pairs; older versions as a flat list.
    if raw and isinstance(raw[0], list | tuple):
        return [(str(m), float(s)) for m, s in raw]
    return [(str(raw[i]), float(raw[i + 1])) for i in range(0, len(raw), 2)]


def _ms(value: int) -> int | None:
    return None if value < 0 else int(value)


_INT_FIELDS: tuple[str, ...] = ("attempts", "deliveries", "created_ms", "enqueued_ms", "started_ms")
_INT_FIELDS += ("finished_ms", "run_at_ms")


def parse_record(job_id: str, raw: dict[str, str]) -> JobRecord:
    """Build a :class:`JobRecord` from a job hash; tolerant of a damaged envelope."""
    data: dict[str, Any] = {"id": job_id, "status": raw.get("status", JobStatus.DEAD)}
    for name in _INT_FIELDS:
        if name in raw:
            data[name] = int(raw[name])
    for name in ("error", "error_type", "traceback", "worker"):
        data[name] = raw.get(name)
    data["cancel_requested"] = raw.get("cancel") == "1"
    if "result" in raw:
        data["result"] = json.loads(raw["result"])
    if "progress" in raw:
        data["progress"] = float(raw["progress"])
        data["progress_message"] = raw.get("progress_message")
    try:
        data["job"] = json.loads(raw["envelope"]) if "envelope" in raw else None
        return JobRecord.model_validate(data)
    except ValueError:
        data["job"] = None
        return JobRecord.model_validate(data)


# --------------------------------------------------------------------------- the drivers


_MARKER_TTL_MS = 60_000


def _sha(source: str) -> str:
    sha = _SHAS.get(source)
    if sha is None:
        sha = _SHAS[source] = hashlib.sha1(source.encode()).hexdigest()
    return sha


_SHAS: dict[str, str] = {}


def _check_replicas(reply: Any, acked: int, request: Replicated) -> Any:
    if acked < request.replicas:
        raise NotReplicatedError(
            f"{request.call.name} was written on the primary but {acked} of {request.replicas}"
            f" replica(s) acknowledged it within {request.timeout_ms} ms: a failover now could"
            " lose it; check the replicas, or raise TASKFORGE_DURABLE_TIMEOUT"
        )
    return reply


#: Script calls that take the hot lane: a producer's enqueue (``.delay()``, ``enqueue_many``).
_HOT_SCRIPTS = frozenset({"enqueue"})


class _HotLane:
    """One connection held out of the pool for script calls, used by one thread at a time.

    redis-py's per-command path (pool checkout with its ``can_read`` poll and locks, the retry
    wrapper, observability hooks, ``Script`` with its sha lookup) costs several times the
    Python work of sending the packed command and reading its reply on a connection in hand;
    for a ``.delay()``, which is one script call, that path was most of the client's CPU. A
    thread that finds the lane busy, a broken connection (then dropped), or a forked process
    takes the ordinary path, which keeps its retries: a call that fails here is sent again
    there, as redis-py's own retry would send it again.
    """

    def __init__(self, client: redis.Redis, *, retry_timeouts: bool):
        self._pool = client.connection_pool
        self._retry_timeouts = retry_timeouts
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def call(self, command: tuple[Arg | bytes, ...]) -> tuple[bool, Any]:
        """``(True, reply)``, or ``(False, None)`` when the caller must use the pool instead.

        Raises:
            redis.ResponseError: Redis answered with an error (``NOSCRIPT`` included); the
                connection stays usable.
        """
        if not self._lock.acquire(blocking=False):
            return False, None
        try:
            conn = self._connection()
            try:
                conn.send_packed_command(conn.pack_command(*command))
                return True, conn.read_response()
            except redis.ResponseError:
                raise
            except (redis.RedisError, OSError) as exc:
                self._drop()
                if isinstance(exc, redis.TimeoutError) and not self._retry_timeouts:
                    raise  # as the pooled path would: no second wait of a whole timeout
                return False, None
            except BaseException:  # interrupted mid-call: the connection's state is unknown
                self._drop()
                raise
        finally:
            self._lock.release()

    def _connection(self) -> Any:
        if self._conn is not None and self._pid != os.getpid():
            self._conn = None  # the parent's socket: never touch it in a forked child
        if self._conn is None:
            self._conn, self._pid = self._pool.get_connection(), os.getpid()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self._pool.release(conn)

    def close(self) -> None:
        """Hand the connection back (the pool is about to be closed)."""
        with self._lock:
            self._drop()


class _AsyncHotLane:
    """:class:`_HotLane` for the asyncio client: one connection held for the enqueue script,
    used by one task at a time (a task that finds it busy takes the pooled path).

    A task cancelled while its call is out leaves a reply unread on the connection: the lane
    forgets that connection at once and a separate task disconnects it and hands it back.
    """

    def __init__(self, client: redis.asyncio.Redis, *, retry_timeouts: bool):
        self._pool = client.connection_pool
        self._retry_timeouts = retry_timeouts
        self._busy = False
        self._conn: Any = None
        self._discarding: set[asyncio.Task[None]] = set()

    async def call(self, command: tuple[Arg | bytes, ...]) -> tuple[bool, Any]:
        """``(True, reply)``, or ``(False, None)``: see :meth:`_HotLane.call`."""
        if self._busy:
            return False, None
        self._busy = True
        try:
            if self._conn is None:
                self._conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
            conn = self._conn
            try:
                await conn.send_packed_command(conn.pack_command(*command))
                return True, await conn.read_response()
            except redis.ResponseError:
                raise
            except (redis.RedisError, OSError) as exc:
                self._discard()
                if isinstance(exc, redis.TimeoutError) and not self._retry_timeouts:
                    raise  # as the pooled path would: no second wait of a whole timeout
                return False, None
            except BaseException:  # cancelled mid-call: the connection's state is unknown
                self._discard()
                raise
        finally:
            self._busy = False

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self._hand_back(conn))
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)

    async def _hand_back(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect()
        await self._pool.release(conn)

    async def aclose(self) -> None:
        """Hand the connection back (the pool is about to be closed)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._pool.release(conn)


class _Overlapped(Generic[T]):
    """:meth:`SyncBroker.run_overlapped`'s state: one connection, the calls sent but unread."""

    def __init__(self, broker: SyncBroker):
        self.broker = broker
        self.pool: Any = broker.client.connection_pool  # type: ignore[union-attr]  # not a cluster
        self.conn: Any = self.pool.get_connection()
        self.in_flight: deque[tuple[Op[T], ScriptCall]] = deque()
        self.results: list[T] = []
        self.loaded: set[str] = set()

    def add(self, op: Op[T]) -> None:
        request = next(op)
        if not isinstance(request, ScriptCall):
            self.flush()
            self.results.append(self.broker.finish(op, self.broker._send(request)))
            return
        self.in_flight.append((op, request))
        if self.conn is None:
            self.flush()
            return
        try:
            if len(self.in_flight) == 1 and request.name not in self.loaded:
                # Loaded up front, so no call after the first can find it missing while an
                # earlier one is sent again (which would put a later chunk first).
                self.conn.send_command("SCRIPT", "LOAD", SOURCES[request.name])
                self.conn.read_response()
                self.loaded.add(request.name)
            # redis-py's health check reads a reply: only with none pending, or it takes ours.
            self.conn.send_command(*_evalsha(request), check_health=len(self.in_flight) == 1)
        except (redis.ConnectionError, redis.TimeoutError):
            self._broken()
            return
        if len(self.in_flight) > 1:  # keep one call running in Redis while the next is built
            self._receive()

    def flush(self) -> None:
        while self.in_flight:
            if self.conn is None:  # its reply was lost with the connection: send it again
                op, request = self.in_flight.popleft()
                self.results.append(self.broker.finish(op, self.broker._send(request)))
            else:
                self._receive()

    def close(self) -> None:
        if self.conn is not None:
            if self.in_flight:  # unread replies: nobody else may read them
                self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None

    def _receive(self) -> None:
        op, _ = self.in_flight[0]
        try:
            reply = self.conn.read_response()
        except redis.exceptions.NoScriptError:
            self._reload()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            self._broken()
            return
        self.in_flight.popleft()
        self.results.append(self.broker.finish(op, reply))

    def _reload(self) -> None:
        # The server lost its scripts (a restart, SCRIPT FLUSH): the oldest call ran nothing,
        # and neither did the ones behind it, unless another client loaded the script in the
        # meantime. Read them all before sending any again, so the refused ones go in order.
        replies: list[Any] = [_REFUSED]
        broken = False
        for _ in range(len(self.in_flight) - 1):
            try:
                replies.append(self.conn.read_response())
            except redis.exceptions.NoScriptError:
                replies.append(_REFUSED)
            except (redis.ConnectionError, redis.TimeoutError):
                broken = True  # the rest are sent again: enqueue is idempotent
                break
        if broken:
            self._drop()
        for reply in replies + [_REFUSED] * (len(self.in_flight) - len(replies)):
            op, request = self.in_flight.popleft()
            if reply is _REFUSED:
                reply = self.broker._send(request)  # loads the script, then runs the call
            self.results.append(self.broker.finish(op, reply))

    def _broken(self) -> None:
        self._drop()
        self.flush()

    def _drop(self) -> None:
        self.conn.disconnect()
        self.pool.release(self.conn)
        self.conn = None


_REFUSED = object()


def _one_connection(client: SyncRedis | AsyncRedis, settings: Settings) -> bool:
    """Whether requests pipelined on one connection all reach the one server that holds the
    keys (not a cluster's several; not the embedded server, whose pipelines never block)."""
    return not (is_cluster(client) or settings.is_memory)


def _source(name: str, settings: Settings) -> str:
    return MEMORY_SOURCES[name] if settings.is_memory else SOURCES[name]


def _evalsha(call: ScriptCall) -> tuple[Arg | bytes, ...]:
    return (
        "EVALSHA",
        _sha(SOURCES[call.name]),
        len(call.keys),
        *_wire(call.keys),
        *_wire(call.args),
    )


def _wire(args: Sequence[Arg]) -> list[Arg | bytes]:
    """``args`` for the wire: a string holding bytes that were not UTF-8 when Redis sent them
    (decoded with ``surrogateescape``) goes back as those bytes. redis-py's own encoder would
    manage, but hiredis's packer refuses lone surrogates. Envelopes are ASCII: the check is
    ``isascii()`` for nearly every argument."""
    return [_raw(a) if isinstance(a, str) and not a.isascii() else a for a in args]


def _wire_keys(keys: Sequence[str]) -> list[str | bytes]:
    return [_raw(k) if not k.isascii() else k for k in keys]


def _raw(text: str) -> str | bytes:
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
    return text


def _wrap(exc: redis.RedisError, settings: Settings) -> BrokerError:
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return BrokerConnectionError(
            f"cannot reach Redis at {settings.masked_url()}: {settings.scrub(str(exc))}; check"
            " REDIS_URL and that the server is running"
        )
    text = str(exc)
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "maxmemory" in text:
        return BrokerOutOfMemoryError(
            f"Redis is out of memory (used memory > maxmemory): {exc}; the refused command wrote"
            " nothing. Free memory (purge dead jobs, shorten result TTLs) or raise maxmemory"
        )
    if "WRONGTYPE" in text:
        return BrokerError(
            f"Redis refused a command: {exc}; a key under the prefix {settings.prefix!r} holds"
            " another type (another app writing there?): give taskforge its own TASKFORGE_PREFIX"
        )
    if "script" in text.lower():
        return BrokerError(f"a taskforge script failed inside Redis (Redis is reachable): {exc}")
    return BrokerError(f"Redis refused a command (Redis is reachable): {exc}")


class SyncBroker:
    """Runs :class:`Ops` over a blocking redis-py client (producer API, CLI)."""

    def __init__(self, settings: Settings, client: SyncRedis | None = None):
        self.settings = settings
        self.ops = Ops(settings)
        self.client = client if client is not None else sync_client(settings)
        self._scripts: dict[str, Script] = {}
        # Only a plain client of one server: a cluster routes per key, a Sentinel pool follows
        # failovers per checkout, the embedded server has no sockets.
        plain = type(self.client) is redis.Redis and not settings.is_memory
        self._hot = (
            _HotLane(self.client, retry_timeouts=settings.retry_on_timeout)  # type: ignore[arg-type]
            if plain
            else None
        )

    def run(self, op: Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            request = next(op)
            while True:
                request = op.send(self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            raise _wrap(exc, self.settings) from exc

    def run_overlapped(self, ops: Iterable[Op[T]]) -> list[T]:
        """Drive operations of one script call each, Python and Redis working at once.

        Each operation's call is written to the socket as soon as ``ops`` yields it, and its
        reply is read only after the next operation has been built and sent: the work ``ops``
        does to build an operation (encoding a chunk of jobs) overlaps Redis running the
        previous one. Results come back in order. An operation that starts with anything but a
        script call, or a deployment where one connection cannot carry them all (a cluster, the
        embedded server), runs one at a time. Calls whose replies a broken connection lost are
        sent again, so the operations must be idempotent (enqueue is: an id is written once).
        """
        if not _one_connection(self.client, self.settings):
            return [self.run(op) for op in ops]
        overlap: _Overlapped[T] | None = None
        try:
            overlap = _Overlapped(self)
            for op in ops:
                overlap.add(op)
            overlap.flush()
        except redis.RedisError as exc:
            raise _wrap(exc, self.settings) from exc
        finally:
            if overlap is not None:
                overlap.close()
        return overlap.results

    def finish(self, op: Op[T], reply: Any) -> T:
        """Drive ``op``, whose first request was answered with ``reply``, to its result."""
        try:
            request = op.send(reply)
            while True:
                request = op.send(self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _send(self, request: Request) -> Any:
        if isinstance(request, ScriptCall):
            return self._script(request)
        if isinstance(request, Command):
            args = routable(self.client, tuple(_wire(request.args)))
            return self.client.execute_command(*args)  # type: ignore[no-untyped-call]
        if isinstance(request, Replicated):
            return self._replicated(request)
        if isinstance(request, WakeThenCall):
            return self._wake_then_call(request)
        if isinstance(request, EveryPrimary):
            args = routable(self.client, request.command.args)
            if not isinstance(self.client, redis.cluster.RedisCluster):
                return {"": self.client.execute_command(*args)}  # type: ignore[no-untyped-call]
            return {
                node.name: self.client.execute_command(*args, target_nodes=node)  # type: ignore[no-untyped-call]
                for node in self.client.get_primaries()  # type: ignore[no-untyped-call]
            }
        pipe = self.client.pipeline(transaction=False)
        for command in request.commands:
            pipe.execute_command(*_wire(command.args))
        return pipe.execute()

    def _script(self, request: ScriptCall) -> Any:
        if self._hot is not None and request.name in _HOT_SCRIPTS:
            try:
                sent, reply = self._hot.call(_evalsha(request))
            except redis.exceptions.NoScriptError:
                sent = False  # the Script below loads it
            if sent:
                return reply
        script = self._scripts.get(request.name)
        if script is None:
            script = self._scripts[request.name] = self.client.register_script(
                _source(request.name, self.settings)
            )
        return script(keys=_wire_keys(request.keys), args=_wire(request.args))

    def _wake_then_call(self, request: WakeThenCall) -> Any:
        call = request.call
        pop: tuple[Arg, ...] = ("BZPOPMIN", *request.wake_keys, request.timeout_s)
        if not _one_connection(self.client, self.settings):
            self._send(Command(pop))
            return self._send(call)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*pop)
        pipe.execute_command(*_evalsha(call))
        try:
            _, reply = pipe.execute()
        except redis.exceptions.NoScriptError:
            # The server lost its scripts (a restart): the pop happened, the script did not.
            return self._send(call)
        return reply

    def _replicated(self, request: Replicated) -> Any:
        # One pipeline: WAIT counts replicas holding *this connection's* writes.
        call, source = request.call, SOURCES[request.call.name]
        for verb, first in (("EVALSHA", _sha(source)), ("EVAL", source)):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command(verb, first, len(call.keys), *call.keys, *call.args)
            pipe.execute_command("SET", request.marker, "1", "PX", _MARKER_TTL_MS)
            wait = ("WAIT", request.replicas, request.timeout_ms)
            pipe.execute_command(*wait, **same_node(self.client, call.keys[0]))
            try:
                reply, _, acked = pipe.execute()
            except redis.exceptions.NoScriptError:
                continue  # EVAL loads it; nothing was written
            return _check_replicas(reply, int(acked), request)
        raise AssertionError("unreachable: EVAL never answers NOSCRIPT")

    def close(self) -> None:
        """Release the connection pool."""
        if self._hot is not None:
            self._hot.close()
        self.client.close()


class AsyncBroker:
    """Runs :class:`Ops` over an asyncio redis-py client (worker, async producer API)."""

    def __init__(self, settings: Settings, client: AsyncRedis | None = None):
        self.settings = settings
        self.ops = Ops(settings)
        self.client = client if client is not None else async_client(settings)
        self._scripts: dict[str, AsyncScript] = {}
        plain = type(self.client) is redis.asyncio.Redis and not settings.is_memory
        self._hot = (
            _AsyncHotLane(self.client, retry_timeouts=settings.retry_on_timeout)  # type: ignore[arg-type]
            if plain
            else None
        )

    async def run(self, op: Op[T]) -> T:
        """Drive one operation to its result."""
        try:
            request = next(op)
            while True:
                request = op.send(await self._send(request))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except redis.RedisError as exc:
            raise _wrap(exc, self.settings) from exc

    async def _send(self, request: Request) -> Any:
        if isinstance(request, ScriptCall):
            return await self._script(request)
        if isinstance(request, Command):
            args = routable(self.client, tuple(_wire(request.args)))
            return await self.client.execute_command(*args)
        if isinstance(request, Replicated):
            return await self._replicated(request)
        if isinstance(request, WakeThenCall):
            return await self._wake_then_call(request)
        if isinstance(request, EveryPrimary):
            args = routable(self.client, request.command.args)
            if not isinstance(self.client, redis.asyncio.cluster.RedisCluster):
                return {"": await self.client.execute_command(*args)}  # type: ignore[no-untyped-call]
            await self.client.initialize()  # the slot map is read lazily: it may not be yet
            return {
                node.name: await self.client.execute_command(*args, target_nodes=node)
                for node in self.client.get_primaries()
            }
        pipe = self.client.pipeline(transaction=False)
        for command in request.commands:
            pipe.execute_command(*_wire(command.args))
        return await pipe.execute()

    async def _script(self, request: ScriptCall) -> Any:
        if self._hot is not None and request.name in _HOT_SCRIPTS:
            try:
                sent, reply = await self._hot.call(_evalsha(request))
            except redis.exceptions.NoScriptError:
                sent = False  # the Script below loads it
            if sent:
                return reply
        script = self._scripts.get(request.name)
        if script is None:
            script = self._scripts[request.name] = self.client.register_script(
                _source(request.name, self.settings)
            )
        return await script(keys=_wire_keys(request.keys), args=_wire(request.args))

    async def _wake_then_call(self, request: WakeThenCall) -> Any:
        call = request.call
        pop: tuple[Arg, ...] = ("BZPOPMIN", *request.wake_keys, request.timeout_s)
        if not _one_connection(self.client, self.settings):
            await self._send(Command(pop))
            return await self._send(call)
        pipe = self.client.pipeline(transaction=False)
        pipe.execute_command(*pop)
        pipe.execute_command(*_evalsha(call))
        try:
            _, reply = await pipe.execute()
        except redis.exceptions.NoScriptError:
            # The server lost its scripts (a restart): the pop happened, the script did not.
            return await self._send(call)
        return reply

    async def _replicated(self, request: Replicated) -> Any:
        # One pipeline: WAIT counts replicas holding *this connection's* writes.
        call, source = request.call, SOURCES[request.call.name]
        target = await async_same_node(self.client, call.keys[0])
        for verb, first in (("EVALSHA", _sha(source)), ("EVAL", source)):
            pipe = self.client.pipeline(transaction=False)
            pipe.execute_command(verb, first, len(call.keys), *call.keys, *call.args)
            pipe.execute_command("SET", request.marker, "1", "PX", _MARKER_TTL_MS)
            pipe.execute_command("WAIT", request.replicas, request.timeout_ms, **target)
            try:
                reply, _, acked = await pipe.execute()
            except redis.exceptions.NoScriptError:
                continue  # EVAL loads it; nothing was written
            return _check_replicas(reply, int(acked), request)
        raise AssertionError("unreachable: EVAL never answers NOSCRIPT")

    async def subscribe(
        self, *channels: str, ready: anyio.Event | None = None
    ) -> AsyncIterator[tuple[str, str]]:
        """Yield ``(channel, data)`` from pub/sub, resubscribing after a lost connection.

        ``ready`` is set once the first subscription is confirmed. Pub/sub is fire-and-forget:
        messages sent while reconnecting are missed.
        """
        delay_s = 0.1
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*channels)
                if ready is not None:
                    ready.set()
                delay_s = 0.1
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        yield message["channel"], message["data"]
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                log.warning("pub/sub connection lost (%s); resubscribing in %.1fs", exc, delay_s)
            finally:
                # Close before backing off: redis-py may already have reconnected and
                # resubscribed this connection, which would then swallow messages unread.
                with anyio.CancelScope(shield=True):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await anyio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)

    async def aclose(self) -> None:
        """Release the connection pool."""
        if self._hot is not None:
            await self._hot.aclose()
        await self.client.aclose()
