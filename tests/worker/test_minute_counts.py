"""The per-minute outcome counters (``taskforge queues``) are written at most once a second
while outcomes flow, and the ones held back reach Redis while the worker idles."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import pytest

from taskforge import Taskforge
from taskforge.worker import Worker

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


def done_this_minute(app: Taskforge, queue: str) -> int:
    minute = int(time.time() // 60)
    ops = app.client.broker.ops
    counted = app.client.broker.run(ops.recent_outcomes(queue, [minute - 1, minute]))
    return int(counted.get("done", 0))


async def until_counted(app: Taskforge, n: int) -> None:
    while done_this_minute(app, "default") < n:  # bounded by the caller's fail_after
        await anyio.sleep(0.02)


async def test_counts_held_back_reach_redis_while_the_worker_idles(
    app_factory: AppFactory,
) -> None:
    app = app_factory()

    @app.task(name="counts.noop")
    async def noop() -> None:
        """Does nothing."""

    worker = Worker(app.settings, app.registry, concurrency=4)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await (await noop.adelay()).aresult(timeout=5)
            await until_counted(app, 1)
            # Within a second of that write: this count is held back, and no job follows.
            await (await noop.adelay()).aresult(timeout=5)
            await until_counted(app, 2)
            worker.stop()

    assert done_this_minute(app, "default") == 2
