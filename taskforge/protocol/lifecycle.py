"""A job's life in Redis: enqueue, fetch, finish, retry, requeue, extend, cancel, revive.

Each operation is a generator of requests (:data:`~taskforge.driver.requests.Op`): it yields a
script call or commands and returns the parsed reply, and a driver sends them
(:mod:`taskforge.driver`). The scripts it names are in ``taskforge/protocol/lua/``, each with its
``KEYS``/``ARGV`` in its header (``tests/protocol/test_lua_headers.py`` checks the two agree).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from taskforge.driver.requests import (
    Arg,
    Batch,
    Command,
    Op,
    Replicated,
    ScriptCall,
    WakeThenCall,
)
from taskforge.job import JobRecord, JobStatus
from taskforge.protocol.keys import GlobalKeys, QueueKeys
from taskforge.protocol.records import (
    Enqueued,
    Fetched,
    NewJob,
    Outcome,
    fetched,
    parse_record,
)
from taskforge.settings import Settings


class OpsBase:
    """What every group of operations reads: the settings and the keys."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.globals = GlobalKeys(settings.prefix)
        self._keys: dict[str, QueueKeys] = {}
        self._enqueue_keys: dict[str, tuple[str, ...]] = {}

    def keys(self, queue: str) -> QueueKeys:
        """The keys of ``queue`` (cached)."""
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys(self.settings.prefix, queue)
        return k


class LifecycleOps(OpsBase):
    """The operations that move a job from enqueue to its outcome."""

    def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> Op[list[Enqueued]]:
        """Create jobs in ``queue``; duplicates (same id or held unique key) write nothing."""
        # A fresh token per call: redis-py's retry and the overlapped stream re-send this same
        # call after a lost reply, and the script knows the jobs it wrote the first time.
        args: list[Arg] = [self.settings.events_channel, queue, os.urandom(8).hex()]
        for j in jobs:
            args += [j.id, j.task, j.how(), len(j.fields) // 2, *j.fields]
        keys = self._enqueue_keys.get(queue)
        if keys is None:  # built once per queue: a .delay() is this call and little else
            k = self.keys(queue)
            keys = (*k.ready_lists, k.scheduled, k.wake, k.job_prefix, k.base + ":unique:")
            self._enqueue_keys[queue] = keys
        call = ScriptCall("enqueue", keys, args)
        if self.settings.durable_enqueue:
            k = self.keys(queue)
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
        return fetched((yield call))

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
        return fetched(
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
        return parse_record(job_id, raw, queue) if raw else None


__all__ = ["LifecycleOps", "OpsBase"]
