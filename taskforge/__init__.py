"""taskforge: a Celery-style task framework built directly on Redis primitives.

The names a worker and a producer use are imported with the package; the others (the admin API,
the cache, dead letters, the guide's queue, the pub/sub client, the worker, the workflow
handles) are imported on first use (PEP 562), so a process loads only what it touches:
``from taskforge import Admin`` works as before, and type checkers see every name.
"""

from __future__ import annotations

# Private aliases: every public name this module binds is in __all__ (tests/test_public_api.py).
import gc as _gc
import importlib as _importlib
import typing as _typing

# The imports below (with redis-py's and pydantic's) make ~60k objects that live as long as the
# process: classes, functions, schemas, command tables. The cyclic collector, run while they
# are made, finds no garbage among them and cost a worker ~30 ms of its start (~10%), so it
# pauses for the imports. (Only `taskforge worker`, a process of ours, also moves what exists
# then to the permanent generation with gc.freeze: a library must not do that to its importer,
# whose cycles alive at import and dropped later would never be collected.)
_collecting = _gc.isenabled()
_gc.disable()
try:
    from taskforge.app import Taskforge, default_app, periodic, task
    from taskforge.canvas import chain, chord, group
    from taskforge.context import JobContext, current_job
    from taskforge.cron.schedule import CatchUp
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
    from taskforge.handle import JobHandle
    from taskforge.job import Job, JobPriority, JobRecord, JobStatus
    from taskforge.middleware import Enqueueing, Middleware, RunOutcome
    from taskforge.partition import Partitioned
    from taskforge.registry import Registry
    from taskforge.retry import Fail, Retry
    from taskforge.settings import Settings
    from taskforge.task import Call, Task
finally:
    if _collecting:
        _gc.enable()

#: Public names imported on first use, and their modules.
_LAZY = {
    "Admin": "taskforge.admin",
    "AsyncAdmin": "taskforge.admin",
    "CacheService": "taskforge.cache",
    "DeadFilter": "taskforge.deadletters",
    "JobQueue": "taskforge.guide_queue",
    "JobWorker": "taskforge.guide_queue",
    "RedisClient": "taskforge.pubsub",
    "SyncCacheService": "taskforge.cache",
    "Worker": "taskforge.worker",
    "WorkflowHandle": "taskforge.workflow",
    "WorkflowInfo": "taskforge.workflow",
    "WorkflowMember": "taskforge.workflow",
    "WorkflowStatus": "taskforge.workflow",
    "cached": "taskforge.cache",
    "get_cache_service": "taskforge.cache",
    "get_redis_client": "taskforge.pubsub",
}

if _typing.TYPE_CHECKING:
    from taskforge.admin import Admin, AsyncAdmin
    from taskforge.cache import CacheService, SyncCacheService, cached, get_cache_service
    from taskforge.deadletters import DeadFilter
    from taskforge.guide_queue import JobQueue, JobWorker
    from taskforge.pubsub import RedisClient, get_redis_client
    from taskforge.worker import Worker
    from taskforge.workflow import WorkflowHandle, WorkflowInfo, WorkflowMember, WorkflowStatus
else:

    def __getattr__(name: str) -> _typing.Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'taskforge' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_LAZY})


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
