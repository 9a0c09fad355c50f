"""taskforge: a Celery-style task framework built directly on Redis primitives."""

from taskforge.app import Taskforge, default_app, task
from taskforge.context import JobContext, current_job
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    ConfigurationError,
    EnqueueError,
    JobCancelledError,
    JobFailedError,
    JobNotFoundError,
    PayloadTooLargeError,
    ResultTimeoutError,
    SerializationError,
    TaskforgeError,
    UnknownTaskError,
)
from taskforge.handle import JobHandle
from taskforge.job import Job, JobPriority, JobRecord, JobStatus
from taskforge.queue import JobQueue, JobWorker
from taskforge.registry import Registry
from taskforge.retry import Retry
from taskforge.settings import Settings
from taskforge.task import Call, Task
from taskforge.worker import Worker

__all__ = [
    "BrokerConnectionError",
    "BrokerError",
    "Call",
    "ConfigurationError",
    "EnqueueError",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobNotFoundError",
    "JobPriority",
    "JobQueue",
    "JobRecord",
    "JobStatus",
    "JobWorker",
    "PayloadTooLargeError",
    "Registry",
    "ResultTimeoutError",
    "Retry",
    "SerializationError",
    "Settings",
    "Task",
    "Taskforge",
    "TaskforgeError",
    "UnknownTaskError",
    "Worker",
    "current_job",
    "default_app",
    "task",
]
