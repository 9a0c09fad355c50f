"""Precise schedules: on time under load, promoted exactly once, and no polling while idle."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import anyio
import pytest
import redis

from taskforge import Call, JobStatus, Taskforge, Worker
from tests.support.timetasks import QUIET, key, wait_until

AppFactory = Callable[..., Taskforge]
WorkerProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def _marks_at(app: Taskforge, when: datetime, n: int) -> list[Call]:
    call = app.call("sched.mark")
    return [replace(call, run_at=when) for _ in range(n)]


def _server_now(r: redis.Redis) -> datetime:
    seconds, micros = r.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def _runs(r: redis.Redis, prefix: str) -> list[tuple[str, int]]:
    raw = r.lrange(key("runs", prefix), 0, -1)
    return [(job_id, int(ms)) for job_id, ms in (line.split() for line in raw)]


def test_ten_thousand_jobs_due_at_once_are_promoted_exactly_once(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    for _ in range(3):
        worker_process(*QUIET, "-c", "100")
    due = _server_now(r) + timedelta(seconds=3)
    handles = app.enqueue_many(_marks_at(app, due, 10_000))
    started = time.monotonic()

    wait_until(lambda: r.llen(key("runs", prefix)) >= 10_000, timeout_s=60)
    elapsed_s = time.monotonic() - started

    runs = _runs(r, prefix)
    ran = Counter(job_id for job_id, _ in runs)
    assert len(runs) == 10_000
    assert set(ran) == {h.id for h in handles}
    assert max(ran.values()) == 1
    records = app.client.broker.run(app.client.broker.ops.records("default", list(ran)))
    assert all(rec is not None and rec.deliveries == 1 for rec in records)
    # Promotion time: the last promoting fetch stamps enqueued_ms (server ms) on the record.
    lag_ms = max(rec.enqueued_ms - rec.run_at_ms for rec in records)  # type: ignore[operator,union-attr]
    assert lag_ms < 5000
    print(f"10k due jobs: all promoted within {lag_ms} ms of their time, ran {elapsed_s:.1f}s")


def test_scheduled_jobs_start_within_a_second_of_their_time(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    for _ in range(2):
        worker_process(*QUIET, "-c", "50")
    base = _server_now(r) + timedelta(seconds=2)
    calls = [c for i in range(10) for c in _marks_at(app, base + timedelta(seconds=i / 5), 30)]
    handles = app.enqueue_many(calls)

    wait_until(lambda: r.llen(key("runs", prefix)) >= len(calls), timeout_s=30)

    run_at = {h.id: int(c.run_at.timestamp() * 1000) for h, c in zip(handles, calls, strict=True)}  # type: ignore[union-attr]
    lateness_ms = sorted(ms - run_at[job_id] for job_id, ms in _runs(r, prefix))
    assert lateness_ms[0] >= 0, "a job started before its time"
    assert lateness_ms[-1] < 1000, f"latest start {lateness_ms[-1]} ms after its time"
    print(
        f"start lateness: median {lateness_ms[len(lateness_ms) // 2]} ms, max {lateness_ms[-1]} ms"
    )


def test_scheduled_jobs_start_on_time_while_workers_are_busy(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    for _ in range(2):
        worker_process(*QUIET, "-c", "40")
    # A steady flow of 200 jobs/s holding 0.2 s each: about half of the 80 slots busy throughout.
    busy = app.call("sched.busy", 0.2)
    app.enqueue_many([replace(busy, delay_s=i / 200) for i in range(1000)])
    base = _server_now(r) + timedelta(seconds=2)
    calls = [c for i in range(10) for c in _marks_at(app, base + timedelta(seconds=i / 5), 20)]
    handles = app.enqueue_many(calls)

    wait_until(lambda: r.llen(key("runs", prefix)) >= len(calls), timeout_s=30)

    run_at = {h.id: int(c.run_at.timestamp() * 1000) for h, c in zip(handles, calls, strict=True)}  # type: ignore[union-attr]
    lateness_ms = sorted(ms - run_at[job_id] for job_id, ms in _runs(r, prefix))
    print(f"busy: median {lateness_ms[len(lateness_ms) // 2]} ms, max {lateness_ms[-1]} ms")
    assert lateness_ms[-1] < 1000, f"latest start {lateness_ms[-1]} ms after its time"


@pytest.mark.anyio
async def test_idle_worker_sleeps_until_the_next_due_job(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()
    ran_at: list[float] = []

    @app.task
    def tick() -> None:
        ran_at.append(time.time())

    handle = await tick.aschedule(timedelta(seconds=1.5))
    due_s = (await handle.ainfo()).run_at_ms / 1000  # type: ignore[operator]
    before = _evalsha_calls(r)
    worker = Worker(app.settings, app.registry, burst=True, burst_horizon_s=5, block_s=30)

    with anyio.fail_after(10):
        await worker.run()

    fetches = _evalsha_calls(r) - before
    assert (await handle.ainfo()).status is JobStatus.SUCCEEDED
    assert 0 <= ran_at[0] - due_s < 0.5
    assert fetches <= 12, f"{fetches} script calls while waiting 1.5 s: that is polling"


def _evalsha_calls(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
