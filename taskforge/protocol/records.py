"""What the queue protocol's operations take and answer: the job payloads and parsed replies.

Plain data, no Redis: the operations (:mod:`taskforge.protocol.ops`) build requests from these,
and parse the scripts' replies into them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskforge.job import JobPriority, JobRecord, JobStatus


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


def fetched(raw: list[Any]) -> Fetched:
    """Fetch's reply parsed."""
    jobs = [
        Leased(raw[i], raw[i + 1], str(raw[i + 2]), int(raw[i + 3])) for i in range(2, len(raw), 4)
    ]
    return Fetched(jobs, ms_or_none(raw[0]), ms_or_none(raw[1]))


def scored(raw: list[Any]) -> list[tuple[str, float]]:
    """``(member, score)`` pairs of a ``WITHSCORES`` reply, whatever redis-py's shape."""
    # redis-py 8 answers WITHSCORES as [member, score] pairs; older versions as a flat list.
    if raw and isinstance(raw[0], list | tuple):
        return [(str(m), float(s)) for m, s in raw]
    return [(str(raw[i]), float(raw[i + 1])) for i in range(0, len(raw), 2)]


def ms_or_none(value: int) -> int | None:
    """A script's ms answer, where a negative value means none."""
    return None if value < 0 else int(value)


_INT_FIELDS: tuple[str, ...] = ("attempts", "deliveries", "created_ms", "enqueued_ms", "started_ms")
_INT_FIELDS += ("finished_ms", "run_at_ms")


def parse_record(job_id: str, raw: dict[str, str]) -> JobRecord:
    """Build a :class:`JobRecord` from a job hash; tolerant of a damaged envelope or counter.

    A counter or time that is not a whole number reads as unknown (0 for ``attempts`` and
    ``deliveries``) and is named in ``unreadable_fields``: reading a job must not fail where
    the worker copes (its fetch buries a job whose ``attempts`` it cannot read, as poison).
    """
    data: dict[str, Any] = {"id": job_id, "status": raw.get("status", JobStatus.DEAD)}
    unreadable: list[str] = []
    for name in _INT_FIELDS:
        if name in raw:
            value = read_count(raw[name])
            if value is None:
                unreadable.append(name)
            else:
                data[name] = value
    for name in ("error", "error_type", "traceback", "worker"):
        data[name] = raw.get(name)
    data["cancel_requested"] = raw.get("cancel") == "1"
    if "result" in raw:
        data["result"] = json.loads(raw["result"])
    if "progress" in raw:
        progress = _fraction(raw["progress"])
        if progress is None:
            unreadable.append("progress")
        data["progress"] = progress
        data["progress_message"] = raw.get("progress_message")
    data["unreadable_fields"] = tuple(unreadable)
    try:
        data["job"] = json.loads(raw["envelope"]) if "envelope" in raw else None
        return JobRecord.model_validate(data)
    except ValueError:
        data["job"] = None
        return JobRecord.model_validate(data)


def read_count(text: str) -> int | None:
    """A record's count or time as the scripts' ``as_count`` reads it: a whole number from 0
    below 2**53 (``"5"``, ``"5.0"``); None for anything else (``"x"``, ``"inf"``, ``"-1"``)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and 0 <= value < 2**53 else None


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


__all__ = [
    "Enqueued",
    "Fetched",
    "Leased",
    "NewJob",
    "Outcome",
    "QueueCounts",
    "fetched",
    "ms_or_none",
    "parse_record",
    "read_count",
    "scored",
]
