"""Every Redis key and channel name taskforge uses, in one place.

All keys of one queue share the hash tag ``{queue}``, so every script touches one hash slot and the
same code runs on Redis Cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskforge.errors import ConfigurationError
from taskforge.job import PRIORITY_ORDER, JobPriority

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")


def check_queue_name(name: str) -> str:
    """Return ``name`` if it can name a queue (letters, digits, ``_.:-``; no braces)."""
    if not _QUEUE_NAME.match(name):
        raise ConfigurationError(
            f"invalid queue name {name!r}: use 1-100 letters, digits or '_.:-' (no braces/spaces)"
        )
    return name


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The keys of one queue (``taskforge:{default}:...``)."""

    prefix: str
    queue: str

    @property
    def base(self) -> str:
        """The common part, hash tag included: ``taskforge:{default}``."""
        return f"{self.prefix}:{{{self.queue}}}"

    @property
    def job_prefix(self) -> str:
        """Job records are ``job_prefix + id``; scripts that read ids from lists build keys so."""
        return f"{self.base}:j:"

    def job(self, job_id: str) -> str:
        """The job record hash (README "Redis data model")."""
        return f"{self.base}:j:{job_id}"

    def done(self, job_id: str) -> str:
        """List that result waiters block on; written only when someone waits.

        Its own namespace (``:done:``), not a suffix of the record's key: otherwise job ``k``'s
        list would be job ``k:done``'s record. Every per-id key is ``base:<kind>:<id>`` with a
        fixed kind, so distinct ids (and kinds) never share a key.
        """
        return f"{self.base}:done:{job_id}"

    def ready(self, priority: JobPriority) -> str:
        """Ready list of one priority."""
        return f"{self.base}:ready:{priority.value}"

    @property
    def ready_lists(self) -> list[str]:
        """Ready lists, most urgent first."""
        return [self.ready(p) for p in PRIORITY_ORDER]

    @property
    def scheduled(self) -> str:
        """Sorted set id -> run-at (ms): delayed jobs and retry backoff."""
        return f"{self.base}:scheduled"

    @property
    def inflight(self) -> str:
        """Sorted set id -> lease deadline (ms)."""
        return f"{self.base}:inflight"

    @property
    def dead(self) -> str:
        """Sorted set id -> time dead-lettered (ms)."""
        return f"{self.base}:dead"

    @property
    def wake(self) -> str:
        """Marker idle workers block on (BZPOPMIN)."""
        return f"{self.base}:wake"

    @property
    def fetched(self) -> str:
        """Prefix of fetch request records (the leases one fetch handed out, for a re-send)."""
        return f"{self.base}:fetched:"

    def stop(self, worker_id: str) -> str:
        """A worker's own marker, beside :attr:`wake`: its shutdown wakes its idle fetch."""
        return f"{self.base}:stop:{worker_id}"

    def unique(self, unique_key: str) -> str:
        """Uniqueness lock: holds the id of the job that owns ``unique_key``."""
        return f"{self.base}:unique:{unique_key}"

    def cron(self, name: str) -> str:
        """Last cron tick claimed (ms) for the periodic ``name`` that enqueues into this queue.

        Under the queue's hash tag, so the claim and the tick's enqueue are one script.
        """
        return f"{self.base}:cron:{name}"

    @property
    def durable(self) -> str:
        """Written by every durable enqueue so its ``WAIT`` covers the job even when the
        enqueue itself wrote nothing (a re-sent id); expires on its own."""
        return f"{self.base}:durable"

    @property
    def stats(self) -> str:
        """Hash of per-minute counters (processed/failed) for ``taskforge queues``."""
        return f"{self.base}:stats"


@dataclass(frozen=True, slots=True)
class GlobalKeys:
    """Keys that belong to no single queue."""

    prefix: str

    @property
    def workers(self) -> str:
        """Hash worker id -> heartbeat JSON; each entry also has a TTL'd key of its own."""
        return f"{self.prefix}:workers"

    def worker(self, worker_id: str) -> str:
        """Per-worker liveness key (expires when the worker stops beating)."""
        return f"{self.prefix}:worker:{worker_id}"

    @property
    def queues(self) -> str:
        """Set of queue names ever used, for the CLI's overviews."""
        return f"{self.prefix}:queues"

    @property
    def stats(self) -> str:
        """Per-minute counters of every queue together (``<stats>:<minute>`` hashes): the
        dashboard's charts read one key per minute instead of one per queue and minute. The
        hash tag keeps every minute in one slot, so one script reads them on a Cluster."""
        return f"{self.prefix}:{{stats}}"

    def cron_tick(self, name: str) -> str:
        """Last cron tick enqueued for a periodic task (ms)."""
        return f"{self.prefix}:cron:{name}"

    def rate(self, task: str, window: int) -> str:
        """Rate-limit counter of one task for one window."""
        return f"{self.prefix}:rate:{{{task}}}:{window}"

    def rate_prefix(self, task: str) -> str:
        """Rate-limit counters of one task: ``rate_prefix + window index`` (one slot per task)."""
        return f"{self.prefix}:rate:{{{task}}}:"

    def concurrency(self, task: str) -> str:
        """Sorted set of running jobs of one task (for cluster-wide concurrency limits)."""
        return f"{self.prefix}:conc:{{{task}}}"


__all__ = ["GlobalKeys", "QueueKeys", "check_queue_name"]
