"""The taskforge exception tree, and the signals a task raises: every exception class is here.

Every error taskforge raises on purpose subclasses :class:`TaskforgeError`::

    TaskforgeError
    ├── ConfigurationError        bad settings or task options, caught where they are given
    ├── EnqueueError              a call that cannot become a job (nothing is written)
    │   ├── SerializationError    arguments JSON cannot carry
    │   ├── PayloadTooLargeError  the envelope exceeds ``max_payload_bytes``
    │   └── WorkflowError         a chain/group/chord that cannot run (empty, no callback, ...)
    │       ├── WorkflowCycleError    a workflow that contains itself
    │       └── WorkflowTooLargeError more members than ``MAX_WORKFLOW_MEMBERS``
    ├── UnknownTaskError          a task name the registry does not know
    ├── SerializerRefusedError    a job (or result) in a serializer this side does not accept
    ├── SignatureError            an envelope unsigned, or signed with another key
    ├── BrokerError               Redis refused or failed a command
    │   ├── BrokerConnectionError Redis cannot be reached (after the configured retries)
    │   ├── BrokerOutOfMemoryError Redis refused a write: used memory is over ``maxmemory`` (OOM)
    │   └── NotReplicatedError    a durable write was not acknowledged by a replica in time
    ├── JobNotFoundError          no record for a job id (never existed, or expired)
    │   └── WorkflowNotFoundError no state for a workflow id (never sent, or expired)
    ├── ResultTimeoutError        the job did not finish within the wait
    ├── JobFailedError            the job ended dead or cancelled; carries the remote error
    │   ├── TaskFailedError       the task raised: its type name, message and traceback
    │   └── WorkflowFailedError   a workflow ended failed or cancelled; names the member
    ├── JobCancelledError         raised inside a running task whose cancellation was requested
    ├── SoftTimeoutExceeded       raised inside a running task at its ``soft_timeout``
    └── WorkerLostError           the pool process running the attempt died (SIGKILL, OOM killer)

Outside that tree, on purpose::

    Retry                         a task asks for another attempt (not an error)
    Fail                          a task ends its job dead now, never retried
    └── ArgumentsError            the job's arguments do not fit its task: dead at once
    JobTimeoutError (TimeoutError) raised into a task that ran past its ``timeout``
    JobInterrupted (BaseException) stops a sync task's thread at its timeout or cancel

``Retry`` and ``Fail`` are what a task raises to steer its job (also importable from
:mod:`taskforge.retry`), so ``except TaskforgeError`` around a call never swallows them.
:class:`JobInterrupted` is a ``BaseException``, past any ``except Exception``. The pool's
``RemoteTraceback`` (:mod:`taskforge.pool`) only carries a child process's traceback text as the
cause of the error it re-raises.

A worker records a taskforge exception by its bare class name (``SignatureError``), so which
module defines it does not show in job records; :mod:`taskforge.serializer`,
:mod:`taskforge.signing`, :mod:`taskforge.payload` and :mod:`taskforge.executor` still import
the ones they raise, under the same names.
"""

from __future__ import annotations

import math
from typing import Any


class TaskforgeError(Exception):
    """Base class of every error taskforge raises on purpose."""


class ConfigurationError(TaskforgeError, ValueError):
    """Settings or task options that cannot work; raised where they are given."""


class EnqueueError(TaskforgeError):
    """A call that cannot become a job. Nothing was written to Redis."""


class SerializationError(EnqueueError, TypeError):
    """Arguments or a result that the serializer cannot carry."""


class PayloadTooLargeError(EnqueueError):
    """The encoded envelope is larger than ``Settings.max_payload_bytes``."""


class UnknownTaskError(TaskforgeError, LookupError):
    """A task name that the registry does not know."""


class SerializerRefusedError(TaskforgeError, ValueError):
    """A job uses a serializer this worker does not accept."""


class SignatureError(TaskforgeError, ValueError):
    """An envelope is unsigned or its signature does not match the worker's key."""


class BrokerError(TaskforgeError):
    """Redis refused or failed a command."""


class BrokerConnectionError(BrokerError, ConnectionError):
    """Redis could not be reached, after the configured retries.

    Raised by an enqueue, it is ambiguous: the request may have reached Redis before the
    connection failed. ``job_ids`` names the jobs of that call (``job_id`` the one of a
    ``.delay()``); re-send them with the same ids, which writes each job at most once.
    """

    def __init__(self, message: str, *, job_ids: tuple[str, ...] = ()):
        super().__init__(message)
        self.job_ids = job_ids

    @property
    def job_id(self) -> str | None:
        """The job id of an ambiguous single enqueue (``.delay()``), else None."""
        return self.job_ids[0] if len(self.job_ids) == 1 else None


class BrokerOutOfMemoryError(BrokerError):
    """Redis refused a write because its used memory is over ``maxmemory`` (an OOM reply).

    The refused command wrote nothing. Free memory (purge dead jobs, shorten result TTLs) or raise
    ``maxmemory``; a worker pauses fetching and retries its outcomes until Redis accepts them.
    """


class NotReplicatedError(BrokerError):
    """A durable enqueue was written on the primary, but no replica acknowledged it in time.

    The job exists unless the primary fails before it replicates; re-sending it with the same
    ``job_id`` is safe (a duplicate id writes nothing).
    """


class JobNotFoundError(TaskforgeError, LookupError):
    """No record exists for the job id: it never existed, or its record expired."""


class ResultTimeoutError(TaskforgeError, TimeoutError):
    """The job did not reach a final state within the wait."""


class JobFailedError(TaskforgeError):
    """The job ended ``dead`` or ``cancelled``; carries the remote error type and message."""

    def __init__(self, job_id: str, status: str, error_type: str | None, message: str | None):
        self.job_id = job_id
        self.status = status
        self.error_type = error_type
        self.message = message
        detail = f"{error_type}: {message}" if error_type else (message or "no error recorded")
        self.text = f"job {job_id} ended {status}: {detail}"
        # BaseException's, not super()'s: in a class merged with the task's own exception class
        # (see TaskFailedError), the next __init__ would be that class's, with its own arguments.
        BaseException.__init__(self, self.text)


class TaskFailedError(JobFailedError):
    """The job ended dead because its task raised: ``exc_type`` (qualified name), ``message``,
    ``traceback`` (the worker's text) and ``job_id``.

    When the original class can be found safely (see :mod:`taskforge.remote_errors`), the raised
    error is also an instance of it, so ``except ValueError`` catches a remote ``ValueError``.
    """

    def __init__(
        self, job_id: str, status: str, exc_type: str, message: str | None, traceback: str | None
    ):
        self.exc_type = exc_type
        self.traceback = traceback or ""
        JobFailedError.__init__(self, job_id, status, exc_type, message)

    def __str__(self) -> str:
        # Our own text, never the original class's __str__ (an OSError's would print errno).
        return self.text

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickles (to another process) as a plain TaskFailedError: the merged class is local.
        args = (self.job_id, self.status, self.exc_type, self.message, self.traceback)
        return (TaskFailedError, args)


class JobCancelledError(TaskforgeError):
    """Raised inside a running task when its cancellation was requested."""


class SoftTimeoutExceeded(TaskforgeError):
    """Raised inside a running task when its ``soft_timeout`` passes: time to wrap up.

    An ``Exception`` (catch it to clean up or return early) and deliberately not a
    ``TimeoutError``, so an ``except TimeoutError`` around a network call does not swallow it.
    Uncaught, it fails the attempt like any error (retried per the task's policy). The hard
    ``timeout`` still stops the task if it runs on.
    """

    def __init__(self, message: str = "soft time limit exceeded"):
        super().__init__(message)


class JobInterrupted(BaseException):
    """Raised into a sync task's thread when its job timed out or was cancelled.

    A ``BaseException``, like ``KeyboardInterrupt``: an ``except Exception`` in the task does not
    catch it, so the task cannot run on unseen after the worker has recorded its outcome.
    ``finally`` blocks and context managers still run.
    """


class WorkflowError(EnqueueError):
    """A chain, group or chord that cannot run; raised at ``.delay()``, nothing written."""


class WorkflowCycleError(WorkflowError):
    """A workflow that contains itself (a step that is its own ancestor)."""


class WorkflowTooLargeError(WorkflowError):
    """A workflow with more members than the limit (``taskforge.workflow.MAX_WORKFLOW_MEMBERS``)."""


class WorkflowNotFoundError(JobNotFoundError):
    """No state for a workflow id: never sent, or expired (result TTL after it finished)."""


class WorkflowFailedError(JobFailedError):
    """A workflow ended ``failed`` (a member died) or ``cancelled``.

    ``job_id`` names the member that failed (empty for a cancel), ``workflow_id`` the workflow.
    """

    def __init__(
        self,
        workflow_id: str,
        status: str,
        member: str,
        error_type: str | None,
        message: str | None,
    ):
        super().__init__(member, status, error_type, message)
        self.workflow_id = workflow_id
        self.args = (
            f"workflow {workflow_id} ended {status}"
            + (f" at {member}: " if member else ": ")
            + (f"{error_type}: {message}" if error_type else (message or "no error recorded")),
        )


class WorkerLostError(TaskforgeError):
    """The pool process running an attempt died before it answered (SIGKILL, the OOM killer, a
    crash in C code). The attempt counts as failed and the job follows its retry policy."""


class JobTimeoutError(TimeoutError):
    """Raised into a task that ran past its timeout."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt.

    ``countdown_s`` overrides the backoff for this retry. ``exc`` is the cause, recorded on the
    job as its error (type, message, traceback) so ``taskforge dead list`` shows why it retried.
    The job still counts the attempt and is dead-lettered once ``max_retries`` is spent. A
    deliberate ``Retry`` retries even when ``retry_on``/``dont_retry_on`` would not.

    Raises:
        ConfigurationError: ``countdown_s`` is negative, NaN or infinite (here, in the task, so
            the worker never sees a countdown it cannot schedule).
    """

    def __init__(
        self,
        countdown_s: float | None = None,
        *,
        exc: BaseException | None = None,
        reason: str | None = None,
    ):
        if countdown_s is not None and not (
            isinstance(countdown_s, int | float) and math.isfinite(countdown_s) and countdown_s >= 0
        ):
            raise ConfigurationError(
                f"Retry countdown_s must be a finite number of seconds >= 0, got {countdown_s!r}"
            )
        self.countdown_s = countdown_s
        self.exc = exc
        self.reason = reason or (f"{type(exc).__name__}: {exc}" if exc else "retry requested")
        super().__init__(self.reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled across the process pool's pipe: rebuilt with its countdown, cause and reason
        # (the default would pass the reason where the countdown goes).
        return (_rebuild_retry, (self.countdown_s, self.exc, self.reason))


def _rebuild_retry(countdown_s: float | None, exc: BaseException | None, reason: str) -> Retry:
    return Retry(countdown_s, exc=exc, reason=reason)


class Fail(Exception):
    """Raise inside a task to end its job ``dead`` now, with ``reason``, never retried.

    For errors no retry can fix (a malformed address, a deleted account): the job goes to the
    dead letters with error type ``Fail`` at once, whatever ``max_retries`` says. Raise it
    ``from`` the error that decided it, and that error's traceback is recorded too.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class ArgumentsError(Fail):
    """The job's arguments do not fit its task's signature: dead at once (no retry fixes it)."""


__all__ = [
    "ArgumentsError",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerOutOfMemoryError",
    "ConfigurationError",
    "EnqueueError",
    "Fail",
    "JobCancelledError",
    "JobFailedError",
    "JobInterrupted",
    "JobNotFoundError",
    "JobTimeoutError",
    "NotReplicatedError",
    "PayloadTooLargeError",
    "ResultTimeoutError",
    "Retry",
    "SerializationError",
    "SerializerRefusedError",
    "SignatureError",
    "SoftTimeoutExceeded",
    "TaskFailedError",
    "TaskforgeError",
    "UnknownTaskError",
    "WorkerLostError",
    "WorkflowCycleError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowNotFoundError",
    "WorkflowTooLargeError",
]
