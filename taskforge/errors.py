"""The taskforge exception tree.

Every error taskforge raises on purpose subclasses :class:`TaskforgeError`::

    TaskforgeError
    ├── ConfigurationError        bad settings or task options, caught where they are given
    ├── EnqueueError              a call that cannot become a job (nothing is written)
    │   ├── SerializationError    arguments JSON cannot carry
    │   └── PayloadTooLargeError  the envelope exceeds ``max_payload_bytes``
    ├── UnknownTaskError          a task name the registry does not know
    ├── BrokerError               Redis refused or failed a command
    │   ├── BrokerConnectionError Redis cannot be reached (after the configured retries)
    │   ├── BrokerOutOfMemoryError Redis refused a write: used memory is over ``maxmemory`` (OOM)
    │   └── NotReplicatedError    a durable write was not acknowledged by a replica in time
    ├── JobNotFoundError          no record for a job id (never existed, or expired)
    ├── ResultTimeoutError        the job did not finish within the wait
    ├── JobFailedError            the job ended dead or cancelled; carries the remote error
    └── JobCancelledError         raised inside a running task whose cancellation was requested

``Retry`` (in :mod:`taskforge.retry`) is not an error: tasks raise it to ask for another attempt.
:class:`JobInterrupted` is not one either: it is a ``BaseException`` that stops a sync task's
thread at its timeout or cancel, past any ``except Exception``.
"""

from __future__ import annotations


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
        super().__init__(f"job {job_id} ended {status}: {detail}")


class JobCancelledError(TaskforgeError):
    """Raised inside a running task when its cancellation was requested."""


class JobInterrupted(BaseException):
    """Raised into a sync task's thread when its job timed out or was cancelled.

    A ``BaseException``, like ``KeyboardInterrupt``: an ``except Exception`` in the task does not
    catch it, so the task cannot run on unseen after the worker has recorded its outcome.
    ``finally`` blocks and context managers still run.
    """
