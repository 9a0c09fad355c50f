"""The dead-letter queue as an operator sees it: filter, list, requeue, purge.

Operations are request generators over :class:`~taskforge.protocol.ops.Ops` (see
:mod:`taskforge.protocol.inspection`), driven by :class:`~taskforge.admin.Admin` for the CLI and
:class:`~taskforge.admin.AsyncAdmin` for the dashboard. Dead sets are read a page at a time and
acted on in batches, so no call holds Redis for long; a purge deletes a job only if it is still
dead, in the same script step (``purge_dead.lua``), so it cannot race a concurrent requeue.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from taskforge.driver.requests import Batch, Command, Op, ScriptCall
from taskforge.errors import ConfigurationError
from taskforge.job import JobRecord
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import scored

#: Dead jobs read, moved or deleted per Redis call.
DEAD_BATCH = 500

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``30s``, ``15m``, ``2h`` or ``7d``.

    Raises:
        ConfigurationError: not a duration.
    """
    m = _DURATION.match(text)
    if not m:
        raise ConfigurationError(f"{text!r} is not a duration; use e.g. 30s, 15m, 2h, 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Which dead jobs an operation acts on; every field set must match (None: any).

    ``task`` is a name or glob (``email.*``); ``error`` is text searched, case-insensitively,
    in ``"<error type>: <message>"``; ages are seconds since the job was dead-lettered.
    """

    task: str | None = None
    error: str | None = None
    older_than_s: float | None = None
    newer_than_s: float | None = None

    @classmethod
    def parse(
        cls,
        *,
        task: str | None = None,
        error: str | None = None,
        older_than: str | None = None,
        newer_than: str | None = None,
    ) -> DeadFilter:
        """Build from text (durations like ``15m``); empty strings count as not given.

        Raises:
            ConfigurationError: a duration that does not parse.
        """
        return cls(
            task or None,
            error.lower() if error else None,
            parse_duration(older_than) if older_than else None,
            parse_duration(newer_than) if newer_than else None,
        )

    @property
    def active(self) -> bool:
        """True when any filter is set."""
        return any(v is not None for v in (self.task, self.error, self.older_than_s,
                                           self.newer_than_s))  # fmt: skip

    @property
    def needs_records(self) -> bool:
        """True when matching must read job records (task or error filters)."""
        return self.task is not None or self.error is not None

    def matches(self, record: JobRecord | None, age_s: float) -> bool:
        """Whether a dead job with this record, dead for ``age_s`` seconds, is selected."""
        if self.older_than_s is not None and age_s < self.older_than_s:
            return False
        if self.newer_than_s is not None and age_s > self.newer_than_s:
            return False
        if self.task is not None and not fnmatch.fnmatchcase(
            (record.task if record else None) or "", self.task
        ):
            return False
        if self.error is not None:
            text = f"{record.error_type}: {record.error}" if record else ""
            return self.error.lower() in text.lower()
        return True


@dataclass(frozen=True, slots=True)
class DeadJob:
    """One dead-lettered job: when it died, and its record (None when not read or gone)."""

    queue: str
    id: str
    dead_ms: int
    age_s: float
    record: JobRecord | None

    @property
    def reason(self) -> str:
        """Why it is dead: ``"<error type>: <first line of the message>"``."""
        r = self.record
        if r is None or not r.error:
            return "-"
        return f"{r.error_type or 'Error'}: {r.error.splitlines()[0] if r.error else ''}"

    def to_json(self) -> dict[str, Any]:
        """The ``dead list --json`` shape (``dead_at`` is ISO 8601, UTC)."""
        r = self.record
        return {
            "id": self.id,
            "queue": self.queue,
            "task": r.task if r else None,
            "dead_at": datetime.fromtimestamp(self.dead_ms / 1000, UTC).isoformat(
                timespec="milliseconds"
            ),
            "age_s": round(self.age_s, 3),
            "attempts": r.attempts if r else None,
            "error_type": r.error_type if r else None,
            "error": r.error if r else None,
        }


@dataclass(frozen=True, slots=True)
class DeadSelection:
    """The dead jobs an action targets: ``chosen`` per queue, and ids that named no job."""

    chosen: dict[str, list[str]]
    missing: list[str]

    @property
    def count(self) -> int:
        """Jobs chosen."""
        return sum(map(len, self.chosen.values()))


@dataclass(frozen=True, slots=True)
class DeadResult:
    """What a requeue or purge did: per queue counts, and ids that named no job."""

    done: dict[str, int]
    wanted: int
    not_found: list[str]

    @property
    def total(self) -> int:
        """Jobs requeued or purged."""
        return sum(self.done.values())

    @property
    def skipped(self) -> int:
        """Jobs named or matched that were not (no longer dead, or not found)."""
        return self.wanted - self.total


#: Called as ``on_batch(handled, total)`` after each batch of a long requeue or purge.
OnBatch = Callable[[int, int], None]


class DeadOps:
    """Dead-letter operations as request generators."""

    def __init__(self, ops: Ops):
        self.ops = ops

    def scan(
        self,
        queues: Sequence[str],
        flt: DeadFilter,
        *,
        limit: int = 0,
        records: bool = True,
        batch: int = DEAD_BATCH,
    ) -> Op[list[DeadJob]]:
        """Dead jobs of ``queues`` matching ``flt``, oldest first (``limit`` 0: all), read a
        page at a time."""
        now_ms = yield from self.ops.server_time_ms()
        read = records or flt.needs_records
        found: list[DeadJob] = []
        # Every queue's first page in one round trip: most dead sets are empty or short.
        firsts = yield Batch([Command(("ZRANGE", self.ops.keys(q).dead, 0, batch - 1,
                                       "WITHSCORES")) for q in queues])  # fmt: skip
        for q, first in zip(queues, firsts, strict=True):
            page = [(job_id, int(score)) for job_id, score in scored(first)]
            start = 0
            while page:
                ids = [job_id for job_id, _ in page]
                recs = (yield from self.ops.records(q, ids)) if read else [None] * len(ids)
                for (job_id, dead_ms), rec in zip(page, recs, strict=True):
                    age_s = (now_ms - dead_ms) / 1000
                    if flt.matches(rec, age_s):
                        found.append(DeadJob(q, job_id, dead_ms, age_s, rec))
                        if limit and len(found) >= limit:
                            return found
                if len(page) < batch:
                    break
                start += batch
                page = yield from self.ops.dead_ids(q, start, start + batch - 1)
        return found

    def select(
        self,
        queues: Sequence[str],
        *,
        ids: Sequence[str] = (),
        flt: DeadFilter | None = None,
        every: bool = False,
        batch: int = DEAD_BATCH,
    ) -> Op[DeadSelection]:
        """The dead jobs an action targets (ids are located in ``queues``).

        Raises:
            ConfigurationError: neither ids, a filter nor ``every``; or ids with a filter.
        """
        flt = flt or DeadFilter()
        if ids and (every or flt.active):
            raise ConfigurationError("give job ids, or filters/all, not both")
        if not ids and not every and not flt.active:
            raise ConfigurationError(
                "name the jobs: job ids, a filter (task/error/older-than/newer-than), or all"
            )
        chosen: dict[str, list[str]] = {}
        missing: list[str] = []
        for job_id in dict.fromkeys(ids):
            where = yield from self.ops.locate(job_id, queues)
            if where is None:
                missing.append(job_id)
            else:
                chosen.setdefault(where, []).append(job_id)
        if not ids:
            for d in (yield from self.scan(queues, flt, records=False, batch=batch)):
                chosen.setdefault(d.queue, []).append(d.id)
        return DeadSelection(chosen, missing)

    def apply(
        self, verb: str, selection: DeadSelection, *, batch: int = DEAD_BATCH,
        on_batch: OnBatch | None = None,
    ) -> Op[DeadResult]:  # fmt: skip
        """``verb`` (``"requeue"`` or ``"purge"``) the selected jobs, a batch per script call.

        Requeue moves jobs back to their ready lists with fresh attempts; purge deletes them
        for good. Either skips a job that is no longer dead (one script step checks and acts).
        """
        if verb not in ("requeue", "purge"):
            raise ValueError(f"verb must be 'requeue' or 'purge', not {verb!r}")
        done: dict[str, int] = {}
        handled = 0
        for q, ids in selection.chosen.items():
            k = self.ops.keys(q)
            for i in range(0, len(ids), batch):
                part = ids[i : i + batch]
                if verb == "requeue":
                    n = yield from self.ops.revive(q, part)
                else:
                    n = yield ScriptCall("purge_dead", [k.dead, k.job_prefix], part)
                done[q] = done.get(q, 0) + int(n)
                handled += len(part)
                if on_batch:
                    on_batch(handled, selection.count)
        return DeadResult(done, selection.count + len(selection.missing), selection.missing)


__all__ = [
    "DEAD_BATCH",
    "DeadFilter",
    "DeadJob",
    "DeadOps",
    "DeadResult",
    "DeadSelection",
    "OnBatch",
    "parse_duration",
]
