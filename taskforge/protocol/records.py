"""What the queue protocol's operations take and answer: the job payloads and parsed replies.

Plain data, no Redis: the operations (:mod:`taskforge.protocol.ops`) build requests from these,
and parse the scripts' replies into them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from taskforge.job import Job, JobPriority, JobRecord, JobStatus

#: A job record's status is one letter in Redis (the Lua prelude's LETTER/WORD tables agree);
#: the API, events and replies use the words.
STATUS_LETTER: dict[JobStatus, str] = {
    JobStatus.QUEUED: "q",
    JobStatus.SCHEDULED: "s",
    JobStatus.ACTIVE: "a",
    JobStatus.RETRYING: "r",
    JobStatus.SUCCEEDED: "d",
    JobStatus.DEAD: "x",
    JobStatus.CANCELLED: "c",
}
STATUS_OF_LETTER: dict[str, JobStatus] = {v: k for k, v in STATUS_LETTER.items()}

#: The ``Job`` fields a call may override (the record's ``o`` JSON holds those that differ from
#: the task's registered options; a worker takes the rest from its own registry).
OPTION_FIELDS: tuple[str, ...] = (
    "max_retries", "retry_backoff_s", "retry_backoff_cap_s", "retry_jitter", "timeout_s",
    "soft_timeout_s", "expires_ms", "serializer", "headers",
)  # fmt: skip
#: ``Job``'s default for each of :data:`OPTION_FIELDS`: what a record built without a registry
#: leaves out of ``o``.
OPTION_DEFAULTS: dict[str, Any] = {
    n: Job.model_fields[n].get_default(call_default_factory=True) for n in OPTION_FIELDS
}


@dataclass(frozen=True, slots=True)
class NewJob:
    """What enqueue needs of one job.

    ``fields`` are the record's optional fields as flat name, value pairs (``"a"`` args JSON,
    ``"k"`` kwargs JSON, ``"o"`` option overrides JSON, ``"g"`` signature): only those that
    differ from their defaults. ``given_id`` says the caller chose the id (a generated one is
    96 random bits, which the enqueue script trusts to be new).
    """

    id: str
    task: str
    priority: JobPriority = JobPriority.NORMAL
    fields: tuple[str, ...] = ()
    delay_ms: int = 0
    at_ms: int = -1
    unique_key: str = ""
    unique_until: str = "running"
    unique_ttl_s: float = 0.0
    given_id: bool = True

    @classmethod
    def of(cls, job: Job, **kw: Any) -> NewJob:
        """The job for an already built :class:`Job` (tests, tools): every option that differs
        from ``Job``'s defaults goes into ``o``; the id counts as given."""
        fields: list[str] = []
        if job.args:
            fields += ["a", json.dumps(job.args, separators=(",", ":"))]
        if job.kwargs:
            fields += ["k", json.dumps(job.kwargs, separators=(",", ":"))]
        dumped = job.model_dump(include=set(OPTION_FIELDS))
        opts = {n: v for n, v in dumped.items() if v != OPTION_DEFAULTS[n]}
        if opts:
            fields += ["o", json.dumps(opts, separators=(",", ":"))]
        if job.sig:
            fields += ["g", job.sig]
        return cls(job.id, job.task, job.priority, tuple(fields), **kw)

    def how(self) -> str:
        """The enqueue script's ``how`` argument ('' for the common case; see enqueue.lua)."""
        run = ""
        if self.at_ms >= 0:
            run = f"@{self.at_ms}"
        elif self.delay_ms > 0:
            run = f"+{self.delay_ms}"
        prio = "" if self.priority is JobPriority.NORMAL else self.priority.value
        if not (prio or run or self.unique_key or self.given_id):
            return ""
        ttl = repr(float(self.unique_ttl_s)) if self.unique_ttl_s else ""
        given = "i" if self.given_id else ""
        return f"{prio}|{run}|{self.unique_until}|{ttl}|{given}|{self.unique_key}"


@dataclass(frozen=True, slots=True)
class Enqueued:
    """Enqueue's answer for one job: ``created`` is False for a duplicate (``id`` is the holder)."""

    id: str
    status: JobStatus
    created: bool


@dataclass(frozen=True, slots=True)
class Leased:
    """A job handed to this worker: the lease token that fences its outcome, its attempts so
    far, and the record's fields the worker builds its :class:`Job` from (see :func:`job_of`);
    ``''`` where the record has none."""

    id: str
    token: str
    attempts: int
    task: str = ""
    created_ms: str = ""
    args: str = ""
    kwargs: str = ""
    options: str = ""
    priority: str = ""
    sig: str = ""


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
        Leased(raw[i], str(raw[i + 1]), int(raw[i + 2]), *raw[i + 3 : i + 10])
        for i in range(2, len(raw), 10)
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


def job_of(lease: Leased, queue: str, defaults: dict[str, Any] | None = None) -> Job:
    """The :class:`Job` a leased record describes: its fields, over ``defaults`` (the options
    the worker's registry has for the task), under the call's overrides (``o``).

    Raises:
        ValueError: damaged JSON in ``a``/``k``/``o``, or a value ``Job`` refuses (pydantic's
            ValidationError is a ValueError).
    """
    data: dict[str, Any] = dict(defaults) if defaults else {}
    if lease.options:
        overrides = json.loads(lease.options)
        if not isinstance(overrides, dict):
            raise ValueError("options 'o' is not a JSON object")
        data.update(overrides)
    data["id"] = lease.id
    data["task"] = lease.task
    data["queue"] = queue
    data["priority"] = lease.priority or JobPriority.NORMAL
    data["args"] = json.loads(lease.args) if lease.args else []
    data["kwargs"] = json.loads(lease.kwargs) if lease.kwargs else {}
    data["created_ms"] = read_count(lease.created_ms) or 0 if lease.created_ms else 0
    data["sig"] = lease.sig
    return Job.model_validate(data)


#: The record's count and time fields: (field, JobRecord attribute, default when absent).
_INT_FIELDS: tuple[tuple[str, str], ...] = (
    ("n", "attempts"), ("v", "deliveries"), ("c", "created_ms"), ("e", "enqueued_ms"),
    ("started_ms", "started_ms"), ("finished_ms", "finished_ms"), ("r", "run_at_ms"),
)  # fmt: skip


def parse_record(job_id: str, raw: dict[str, str], queue: str = "default") -> JobRecord:
    """Build a :class:`JobRecord` from a job hash; tolerant of a damaged field or counter.

    A counter or time that is not a whole number reads as unknown (0 for ``attempts`` and
    ``deliveries``) and is named in ``unreadable_fields``: reading a job must not fail where
    the worker copes (its fetch buries a job whose ``attempts`` it cannot read, as poison).
    Absent fields read as their defaults (enqueued and run-at: the created time).
    """
    status = STATUS_OF_LETTER.get(raw.get("s", ""), JobStatus.DEAD)
    data: dict[str, Any] = {"id": job_id, "status": status}
    unreadable: list[str] = []
    for name, attr in _INT_FIELDS:
        if name in raw:
            value = read_count(raw[name])
            if value is None:
                unreadable.append(attr)
            else:
                data[attr] = value
    if "created_ms" in data:
        data.setdefault("enqueued_ms", data["created_ms"])
        data.setdefault("run_at_ms", data["created_ms"])
    for name in ("error", "error_type", "traceback", "worker"):
        data[name] = raw.get(name)
    data["cancel_requested"] = raw.get("cancel") == "1"
    if "result" in raw:
        try:
            data["result"] = json.loads(raw["result"])
        except ValueError:  # damaged (a stray HSET): unknown, as a damaged counter
            unreadable.append("result")
    if "progress" in raw:
        progress = _fraction(raw["progress"])
        if progress is None:
            unreadable.append("progress")
        data["progress"] = progress
        data["progress_message"] = raw.get("progress_message")
    data["unreadable_fields"] = tuple(unreadable)
    return _with_job(data, job_id, raw, queue)


def _with_job(data: dict[str, Any], job_id: str, raw: dict[str, str], queue: str) -> JobRecord:
    """The record with its ``Job`` (None when its fields cannot be decoded)."""
    try:
        if "o" in raw:
            data["overrides"] = json.loads(raw["o"])
        data["job"] = job_of(_lease_of(job_id, raw), queue) if "t" in raw else None
        return JobRecord.model_validate(data)
    except ValueError:
        data["job"] = None
        data.pop("overrides", None)
        return JobRecord.model_validate(data)


def _lease_of(job_id: str, raw: dict[str, str]) -> Leased:
    get = raw.get
    return Leased(job_id, "", 0, raw["t"], get("c", ""), get("a", ""), get("k", ""),
                  get("o", ""), get("p", ""), get("g", ""))  # fmt: skip


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
    "OPTION_DEFAULTS",
    "OPTION_FIELDS",
    "STATUS_LETTER",
    "STATUS_OF_LETTER",
    "Enqueued",
    "Fetched",
    "Leased",
    "NewJob",
    "Outcome",
    "QueueCounts",
    "fetched",
    "job_of",
    "ms_or_none",
    "parse_record",
    "read_count",
    "scored",
]
