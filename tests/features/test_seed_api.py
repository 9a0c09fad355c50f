"""The integration guide's queue API: JobQueue and JobWorker, exactly as the guide calls them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskforge import ConfigurationError, JobPriority, JobQueue, JobStatus, JobWorker, Taskforge

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(app_factory: AppFactory) -> Taskforge:
    return app_factory()


@pytest.fixture
def india_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local time zone far from UTC (+05:30), so local and UTC readings differ."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def test_enqueue_returns_an_id_whose_job_is_queued(app: Taskforge) -> None:
    queue = JobQueue(queue_name="default", app=app)
    await queue._ensure_initialized()

    job_id = await queue.enqueue(
        task_name="workflow.execute",
        payload={"workflow_id": "123", "tenant_id": "tenant-1"},
        priority=JobPriority.NORMAL,
        max_retries=3,
    )

    job = await queue.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 0
    assert job.job is not None
    assert job.job.task == "workflow.execute"
    assert job.job.kwargs == {"workflow_id": "123", "tenant_id": "tenant-1"}
    assert job.job.args == []
    assert job.job.max_retries == 3


async def test_queue_size_counts_ready_jobs_by_priority(app: Taskforge) -> None:
    queue = JobQueue(queue_name="default", app=app)
    for priority in (JobPriority.HIGH, JobPriority.HIGH, JobPriority.NORMAL, JobPriority.LOW):
        await queue.enqueue(task_name="email.send", payload={"to": "a@b.c"}, priority=priority)
    await queue.enqueue(task_name="cache.warm", payload={}, priority="low")

    assert await queue.get_queue_size() == 5
    assert await queue.get_queue_size(JobPriority.HIGH) == 2
    assert await queue.get_queue_size(JobPriority.NORMAL) == 1
    assert await queue.get_queue_size(JobPriority.LOW) == 2
    assert await queue.get_scheduled_count() == 0


async def test_scheduled_job_is_counted_and_not_ready(app: Taskforge) -> None:
    queue = JobQueue(queue_name="default", app=app)

    job_id = await queue.enqueue(
        task_name="data.cleanup",
        payload={"type": "old_logs"},
        scheduled_at=datetime.now() + timedelta(hours=1),
        priority=JobPriority.LOW,
    )

    assert await queue.get_scheduled_count() == 1
    assert await queue.get_queue_size() == 0
    job = await queue.get_job(job_id)
    assert job is not None and job.status is JobStatus.SCHEDULED


async def test_naive_scheduled_at_is_read_as_local_time(app: Taskforge, india_time: None) -> None:
    queue = JobQueue(queue_name="default", app=app)
    naive = datetime.now() + timedelta(hours=1)  # local wall time, as in the guide

    job_id = await queue.enqueue(task_name="data.cleanup", payload={}, scheduled_at=naive)

    job = await queue.get_job(job_id)
    assert job is not None and job.run_at_ms is not None
    expected_ms = (time.time() + 3600) * 1000
    # Read as UTC it would be 5.5 hours off; as local time it is an hour from now.
    assert abs(job.run_at_ms - expected_ms) < 5_000


async def test_aware_scheduled_at_is_taken_as_given(app: Taskforge) -> None:
    queue = JobQueue(queue_name="default", app=app)
    at = datetime.now(UTC) + timedelta(minutes=30)

    job_id = await queue.enqueue(task_name="data.cleanup", payload={}, scheduled_at=at)

    job = await queue.get_job(job_id)
    assert job is not None and job.run_at_ms == int(at.timestamp() * 1000)


async def test_get_job_of_an_unknown_id_is_none(app: Taskforge) -> None:
    assert await JobQueue(queue_name="default", app=app).get_job("nope") is None


async def test_bad_priority_or_queue_name_is_refused(app: Taskforge) -> None:
    with pytest.raises(ConfigurationError):
        await JobQueue(queue_name="default", app=app).enqueue(task_name="x", priority="urgent")
    with pytest.raises(ConfigurationError):
        JobQueue(queue_name="no spaces please", app=app)


async def test_job_worker_runs_tasks_by_name_with_the_payload_as_kwargs(app: Taskforge) -> None:
    sent: list[dict[str, Any]] = []

    @app.task(name="email.send")
    async def send(to: str, subject: str) -> str:
        sent.append({"to": to, "subject": subject})
        return f"sent to {to}"

    queue = JobQueue(queue_name="default", app=app)
    job_id = await queue.enqueue(
        task_name="email.send", payload={"to": "ops@example.com", "subject": "hi"}
    )

    stats = await JobWorker(queue_name="default", app=app, burst=True).start()

    assert sent == [{"to": "ops@example.com", "subject": "hi"}]
    assert stats.succeeded == 1
    job = await queue.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.SUCCEEDED
    assert job.attempts == 1
    assert job.result == "sent to ops@example.com"
    assert await queue.get_queue_size() == 0


async def test_job_worker_honours_priorities(app: Taskforge) -> None:
    ran: list[str] = []

    @app.task(name="workflow.execute")
    def execute(workflow_id: str) -> None:
        ran.append(workflow_id)

    queue = JobQueue(queue_name="default", app=app)
    for wf, prio in (("low", "low"), ("normal", "normal"), ("high", "high")):
        await queue.enqueue(
            task_name="workflow.execute", payload={"workflow_id": wf}, priority=prio
        )

    await JobWorker(queue_name="default", app=app, concurrency=1, burst=True).start()

    assert ran == ["high", "normal", "low"]


async def test_failed_job_waits_the_guides_first_backoff_of_60_seconds(app: Taskforge) -> None:
    @app.task(name="data.cleanup")
    def cleanup(type: str) -> None:
        raise OSError(f"disk busy while cleaning {type}")

    queue = JobQueue(queue_name="default", app=app)
    job_id = await queue.enqueue(task_name="data.cleanup", payload={"type": "old_logs"})

    await JobWorker(queue_name="default", app=app, burst=True).start()

    job = await queue.get_job(job_id)
    assert job is not None
    assert job.status is JobStatus.RETRYING
    assert job.attempts == 1
    assert job.error_type == "OSError"
    assert await queue.get_scheduled_count() == 1
    assert job.run_at_ms is not None and job.finished_ms is None
    wait_ms = job.run_at_ms - time.time() * 1000
    assert 55_000 < wait_ms <= 60_000
