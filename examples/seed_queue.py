"""The integration guide's "Job Queue System", runnable as it is written there.

The guide's four job types are registered as tasks by name; jobs are enqueued with ``JobQueue``
exactly as in the guide (``payload`` becomes the task's keyword arguments), then a worker drains
the queue in this process and the results are printed.

    python examples/seed_queue.py                          # embedded server (memory://)
    REDIS_URL=redis://localhost:6379/0 python examples/seed_queue.py

On a real Redis the run is isolated under the key prefix ``seed-example`` (``TASKFORGE_PREFIX``
overrides it); the cleanup job scheduled an hour ahead stays there until then.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from typing import Any

# Before taskforge reads its settings: the embedded server unless REDIS_URL says otherwise.
os.environ.setdefault("REDIS_URL", "memory://")
os.environ.setdefault("TASKFORGE_PREFIX", "seed-example")

from taskforge import JobPriority, JobQueue, JobWorker, Retry, default_app, task

ran: list[str] = []
_email_attempts: dict[str, int] = {}


@task(name="workflow.execute")
async def execute_workflow(workflow_id: str, tenant_id: str) -> dict[str, Any]:
    """Execute a workflow asynchronously."""
    ran.append(f"workflow.execute {workflow_id}")
    await asyncio.sleep(0.01)
    return {"workflow_id": workflow_id, "tenant_id": tenant_id, "steps": 3}


# The retry waits 0.5 s: long enough that the NORMAL and LOW jobs already waiting run first even
# on a busy machine (a retry that is due is HIGH again, and strict priority would run it first).
@task(name="email.send", retry_backoff=0.5)
def send_email(to: str, subject: str) -> str:
    """Send an email notification; the first try meets a busy SMTP server and retries."""
    _email_attempts[to] = _email_attempts.get(to, 0) + 1
    ran.append(f"email.send {to} (attempt {_email_attempts[to]})")
    if _email_attempts[to] == 1:
        raise Retry(countdown_s=0.5, reason="SMTP server busy")
    return f"sent {subject!r} to {to}"


@task(name="data.cleanup")
def cleanup(type: str) -> int:
    """Perform a data cleanup task."""
    ran.append(f"data.cleanup {type}")
    return 0


@task(name="cache.warm")
async def warm_cache(keys: list[str]) -> int:
    """Warm the cache with frequently accessed data."""
    ran.append(f"cache.warm {len(keys)} keys")
    return len(keys)


async def main() -> None:
    """Enqueue the guide's jobs, check the queue, drain it with a worker, print the outcome."""
    print(f"Redis: {default_app.settings.masked_url()}")
    queue = JobQueue(queue_name="default")
    await queue._ensure_initialized()

    # Enqueue immediate job
    workflow_id = await queue.enqueue(
        task_name="workflow.execute",
        payload={"workflow_id": "123", "tenant_id": "tenant-1"},
        priority=JobPriority.NORMAL,
        max_retries=3,
    )
    cache_id = await queue.enqueue(
        task_name="cache.warm",
        payload={"keys": ["user:1", "user:2", "tenant:tenant-1"]},
        priority=JobPriority.LOW,
    )
    email_id = await queue.enqueue(
        task_name="email.send",
        payload={"to": "ops@example.com", "subject": "Workflow 123 started"},
        priority=JobPriority.HIGH,
    )

    # Schedule job for later
    cleanup_id = await queue.enqueue(
        task_name="data.cleanup",
        payload={"type": "old_logs"},
        scheduled_at=datetime.now() + timedelta(hours=1),
        priority=JobPriority.LOW,
    )

    # Monitoring queue status
    size = await queue.get_queue_size()
    high_size = await queue.get_queue_size(JobPriority.HIGH)
    scheduled = await queue.get_scheduled_count()
    print(f"queue size: {size} (high: {high_size}), scheduled: {scheduled}")

    # The guide's worker runs until stopped; burst=True returns once the queue is drained.
    worker = JobWorker(queue_name="default", concurrency=1, burst=True)
    stats = await worker.start()

    print("run order: " + "; ".join(ran))
    for name, job_id in (
        ("workflow.execute", workflow_id),
        ("email.send", email_id),
        ("cache.warm", cache_id),
        ("data.cleanup", cleanup_id),
    ):
        job = await queue.get_job(job_id)
        assert job is not None
        print(f"{name}: Status: {job.status}, Attempts: {job.attempts}, Result: {job.result!r}")
    print(f"worker: {stats.succeeded} succeeded, {stats.retried} retried, {stats.dead} dead")
    print(f"still scheduled: {await queue.get_scheduled_count()}")


if __name__ == "__main__":
    asyncio.run(main())
