"""The job envelope (what travels through Redis) and the job record (what Redis keeps about it)."""

from __future__ import annotations

import os
from base64 import urlsafe_b64encode
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class JobStatus(StrEnum):
    """Where a job is in its life.

    ``queued → active → succeeded``; ``active → retrying`` (waiting in the scheduled set, like a
    ``scheduled`` job) ``→ queued`` when its backoff passes; ``active → dead`` once
    ``max_retries`` is spent (or at once for ``Fail``); ``scheduled → queued`` when due;
    ``queued``, ``scheduled`` or ``retrying → cancelled`` at once, ``active → cancelled`` once
    the worker running it aborts it. :data:`TERMINAL` states are never left. Each transition
    is one Lua script that also publishes it (README: "Guarantees", "Status events").
    """

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    ACTIVE = "active"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


#: States a job never leaves.
TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED}
)
#: States that wait in the scheduled sorted set.
WAITING: frozenset[JobStatus] = frozenset({JobStatus.SCHEDULED, JobStatus.RETRYING})


class JobPriority(StrEnum):
    """Ready-list priority. Strict: no LOW job starts while a HIGH or NORMAL one is ready."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


#: Fetch order, most urgent first.
PRIORITY_ORDER: tuple[JobPriority, ...] = (JobPriority.HIGH, JobPriority.NORMAL, JobPriority.LOW)


def new_job_id() -> str:
    """A fresh random job id: 96 random bits as 16 base64url characters (``A-Z a-z 0-9 - _``),
    never starting with ``-`` (a command line would read ``taskforge job -x…`` as an option).

    One draw in 64 starts with ``-`` and is drawn again: the ids stay uniform over the rest.
    """
    while True:
        job_id = urlsafe_b64encode(os.urandom(12)).decode()
        if job_id[0] != "-":
            return job_id


class Job(BaseModel):
    """Everything a worker needs to run one call, as the worker builds it from the job's record.

    Options that the worker applies (``max_retries``, ``timeout_s``, ...) come from the worker's
    registry, under the call's overrides, which travel in the record (its ``o`` field), so a
    producer's per-call override holds whichever worker runs it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=200)
    task: str = Field(min_length=1)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    queue: str = "default"
    priority: JobPriority = JobPriority.NORMAL
    max_retries: int | None = Field(default=3, ge=0)  # None: retry forever
    retry_backoff_s: float = Field(default=60.0, ge=0)
    retry_backoff_cap_s: float = Field(default=3600.0, ge=0)
    retry_jitter: bool = False
    timeout_s: float | None = Field(default=None, gt=0)
    soft_timeout_s: float | None = Field(default=None, gt=0)
    expires_ms: int | None = None  # epoch ms: an attempt not started by then is cancelled
    created_ms: int = 0
    serializer: str = "json"
    #: Middleware data (trace context, tenant, request id): str -> str, signed with the rest.
    headers: dict[str, str] = Field(default_factory=dict)
    sig: str = ""  # the record's signature, when producers sign (see taskforge.signing)


class JobRecord(BaseModel):
    """A read of a job's Redis record: its envelope plus its state."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    status: JobStatus
    job: Job | None = None
    attempts: int = 0
    deliveries: int = 0
    result: Any = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    created_ms: int | None = None
    enqueued_ms: int | None = None
    started_ms: int | None = None
    finished_ms: int | None = None
    run_at_ms: int | None = None
    worker: str | None = None
    cancel_requested: bool = False
    #: Fields the stored record holds but that could not be read (a stray ``HSET``, a bad
    #: restore): each reads as unknown, a count as 0.
    unreadable_fields: tuple[str, ...] = ()
    #: The options the call overrode (the record's ``o``); ``job`` shows them over ``Job``'s
    #: defaults, or over the task's registered options once read through a client that knows
    #: the task (:meth:`with_task_options`).
    overrides: dict[str, Any] = Field(default_factory=dict)

    def with_task_options(self, options: dict[str, Any]) -> JobRecord:
        """This record with ``job`` showing ``options`` (a task's registered ones, under
        :class:`Job`'s field names) under the call's overrides."""
        if self.job is None:
            return self
        job = self.job.model_copy(update={**options, **self.overrides})
        return self.model_copy(update={"job": job})

    @property
    def task(self) -> str | None:
        """The task name, when the envelope could be decoded."""
        return self.job.task if self.job else None

    @property
    def is_final(self) -> bool:
        """True once the job reached a terminal state."""
        return self.status in TERMINAL


__all__ = [
    "PRIORITY_ORDER",
    "TERMINAL",
    "WAITING",
    "Job",
    "JobPriority",
    "JobRecord",
    "JobStatus",
    "new_job_id",
]
