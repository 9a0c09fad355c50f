"""Every job id has keys of its own: no id's record or done list is another id's (issue 12, 7)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest

from taskforge import Taskforge, Worker
from taskforge.protocol.keys import QueueKeys

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]

TRICKY_IDS = ["k", "k:done", "k:done:done", "done", ":done", "", "a:job:b", "ready:high", "x:"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_job_keys_are_distinct_for_every_id_and_from_the_queue_keys() -> None:
    k = QueueKeys("taskforge", "default")
    fixed = {*k.ready_lists, k.scheduled, k.inflight, k.dead, k.wake, k.durable, k.stats}

    per_id = [key for job_id in TRICKY_IDS for key in (k.job(job_id), k.done(job_id))]

    assert len(set(per_id)) == len(per_id)
    assert not fixed & set(per_id)


async def test_ids_k_and_k_done_each_run_once_with_a_waiter_on_k(app_factory: AppFactory) -> None:
    app = app_factory()
    runs: list[str] = []

    @app.task(name="keys.record", max_retries=0)
    def record(label: str) -> str:
        runs.append(label)
        return label

    record.options(job_id="k:done").delay("second")
    record.options(job_id="k").delay("first")
    waited: list[str] = []
    waiter = threading.Thread(
        target=lambda: waited.append(str(app.client.wait("default", "k", 20).result))
    )
    waiter.start()
    worker = Worker(app.settings, app.registry, concurrency=1, burst=True, block_s=0.5)

    with anyio.fail_after(30):
        await worker.run()
    await anyio.to_thread.run_sync(waiter.join, 20)

    assert sorted(runs) == ["first", "second"]
    assert waited == ["first"]
    assert app.client.record("default", "k").status == "succeeded"
    assert app.client.record("default", "k:done").result == "second"
    assert worker.stats.succeeded == 2
