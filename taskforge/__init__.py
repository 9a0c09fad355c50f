"""taskforge: a Celery-style task framework built directly on Redis primitives."""

from taskforge.admin import Admin, AsyncAdmin
from taskforge.app import Taskforge, default_app, periodic, task
from taskforge.cache import CacheService, SyncCacheService, cached, get_cache_service
from taskforge.canvas import chain, chord, group
from taskforge.context import JobContext, current_job
from taskforge.cron.schedule import CatchUp
from taskforge.deadletters import DeadFilter
from taskforge.errors import (
    BrokerConnectionError,
    BrokerError,
    BrokerOutOfMemoryError,
    ConfigurationError,
    EnqueueError,
    JobCancelledError,
    JobFailedError,
    JobInterrupted,
    JobNotFoundError,
    NotReplicatedError,
    PayloadTooLargeError,
    ResultTimeoutError,
    SerializationError,
    SoftTimeoutExceeded,
    TaskFailedError,
    TaskforgeError,
    UnknownTaskError,
    WorkerLostError,
    WorkflowCycleError,
    WorkflowError,
    WorkflowFailedError,
    WorkflowNotFoundError,
    WorkflowTooLargeError,
)
from taskforge.guide_queue import JobQueue, JobWorker
from taskforge.handle import JobHandle
from taskforge.job import Job, JobPriority, JobRecord, JobStatus
from taskforge.middleware import Enqueueing, Middleware, RunOutcome
from taskforge.partition import Partitioned
from taskforge.pubsub import RedisClient, get_redis_client
from taskforge.registry import Registry
from taskforge.retry import Fail, Retry
from taskforge.settings import Settings
from taskforge.task import Call, Task
from taskforge.worker import Worker
from taskforge.workflow import WorkflowHandle, WorkflowInfo, WorkflowMember, WorkflowStatus

__all__ = [
    "Admin",
    "AsyncAdmin",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerOutOfMemoryError",
    "CacheService",
    "Call",
    "CatchUp",
    "ConfigurationError",
    "DeadFilter",
    "EnqueueError",
    "Enqueueing",
    "Fail",
    "Job",
    "JobCancelledError",
    "JobContext",
    "JobFailedError",
    "JobHandle",
    "JobInterrupted",
    "JobNotFoundError",
    "JobPriority",
    "JobQueue",
    "JobRecord",
    "JobStatus",
    "JobWorker",
    "Middleware",
    "NotReplicatedError",
    "Partitioned",
    "PayloadTooLargeError",
    "RedisClient",
    "Registry",
    "ResultTimeoutError",
    "Retry",
    "RunOutcome",
    "SerializationError",
    "Settings",
    "SoftTimeoutExceeded",
    "SyncCacheService",
    "Task",
    "TaskFailedError",
    "Taskforge",
    "TaskforgeError",
    "UnknownTaskError",
    "Worker",
    "WorkerLostError",
    "WorkflowCycleError",
    "WorkflowError",
    "WorkflowFailedError",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowMember",
    "WorkflowNotFoundError",
    "WorkflowStatus",
    "WorkflowTooLargeError",
    "cached",
    "chain",
    "chord",
    "current_job",
    "default_app",
    "get_cache_service",
    "get_redis_client",
    "group",
    "periodic",
    "task",
]
