"""Job tasks are plain asyncio tasks (cheaper than a task-group spawn) but stay structured: no job
outlives ``Worker.run()``, and a bug outside the job boundary stops the worker loudly."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from taskforge import Taskforge, Worker

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_cancelling_run_from_outside_cancels_its_running_jobs(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    started, ended = anyio.Event(), anyio.Event()

    @app.task(name="jobs.wait_forever")
    async def wait_forever() -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            ended.set()

    wait_forever.delay()
    worker = Worker(app.settings, app.registry, concurrency=2, block_s=0.5)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            tg.cancel_scope.cancel()

    assert ended.is_set()
    assert not worker._runner.tasks


async def test_a_bug_outside_the_job_boundary_stops_the_worker_and_is_raised(
    app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_factory()

    @app.task(name="jobs.noop")
    async def noop() -> None:
        return None

    noop.delay()
    worker = Worker(app.settings, app.registry, concurrency=2, block_s=0.5)

    async def broken(running: object) -> None:
        raise RuntimeError("bug in the worker")

    monkeypatch.setattr(worker._runner, "_execute", broken)

    with anyio.fail_after(15), pytest.raises(RuntimeError, match="bug in the worker"):
        await worker.run()
    assert not worker._runner.tasks
