"""Progress reports: stored on the job record and published on job:updates."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from taskforge import Taskforge, TaskforgeError, Worker, current_job
from taskforge.protocol.brokers import AsyncBroker

pytestmark = pytest.mark.anyio
AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _progress_seen(app: Taskforge, job_id: str) -> tuple[float | None, str | None]:
    with anyio.fail_after(10):
        while True:
            info = await app.handle(job_id).ainfo()
            if info.progress is not None:
                return info.progress, info.progress_message
            await anyio.sleep(0.02)  # bounded by fail_after


async def test_sync_task_progress_is_stored_and_published(app_factory: AppFactory) -> None:
    app = app_factory()
    release = threading.Event()

    @app.task
    def steps() -> str:
        current_job().set_progress(0.4, "step 2")
        release.wait(10)
        return "done"

    events: list[dict[str, Any]] = []
    subscribed = anyio.Event()
    listener = AsyncBroker(app.settings)

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            events.append(json.loads(data))

    worker = Worker(app.settings, app.registry, burst=True, block_s=0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listen)
        await subscribed.wait()
        handle = await steps.adelay()
        tg.start_soon(worker.run)

        progress = await _progress_seen(app, handle.id)
        release.set()
        result = await handle.aresult(timeout=10)
        tg.cancel_scope.cancel()
    await listener.aclose()

    assert progress == (0.4, "step 2")
    assert result == "done"
    reports = [e for e in events if "progress" in e]
    assert reports == [
        {**reports[0], "job_id": handle.id, "status": "active", "progress": 0.4,
         "progress_message": "step 2"}
    ]  # fmt: skip


async def test_async_task_progress_keeps_the_latest_report(app_factory: AppFactory) -> None:
    app = app_factory()
    release = anyio.Event()

    @app.task
    async def walk() -> None:
        for i in range(1, 11):
            current_job().set_progress(i / 10, f"step {i}")
        await release.wait()

    handle = await walk.adelay()
    worker = Worker(app.settings, app.registry, burst=True, block_s=0.5)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            while (await _progress_seen(app, handle.id))[0] != 1.0:
                await anyio.sleep(0.02)  # bounded by fail_after
        release.set()
        await handle.aresult(timeout=10)

    info = await handle.ainfo()
    assert (info.progress, info.progress_message) == (1.0, "step 10")


def test_progress_outside_a_worker_is_refused() -> None:
    with pytest.raises(TaskforgeError, match="only available inside a task"):
        current_job().set_progress(0.5)
