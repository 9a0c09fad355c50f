"""What monitors see is the truth: a job is ``active`` only while it runs (issue 12, defect 10).

At ``-c 1`` the events and the records must never show two jobs active at once, and no job may
get an ``active`` event without running (a job leased ahead of a free slot, then handed back).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Sequence

import anyio
import pytest

from taskforge import Taskforge, Worker
from taskforge.protocol.brokers import AsyncBroker

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]
LEAVING_ACTIVE = {"succeeded", "dead", "cancelled", "retrying", "queued", "scheduled"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def most_active_at_once(events: Sequence[dict[str, object]]) -> int:
    active: set[object] = set()
    most = 0
    for ev in events:
        if ev["status"] == "active":
            active.add(ev["job_id"])
        elif ev["status"] in LEAVING_ACTIVE:
            active.discard(ev["job_id"])
        most = max(most, len(active))
    return most


async def run_watched(
    app: Taskforge, queues: Sequence[str], produce: Callable[[], object], expected: int
) -> tuple[list[dict[str, object]], Worker]:
    """Run a ``-c 1`` worker on ``queues`` while ``produce`` sends jobs; collect every event."""
    events: list[dict[str, object]] = []
    listener = AsyncBroker(app.settings)
    worker = Worker(app.settings, app.registry, queues=queues, concurrency=1, block_s=1.0)
    subscribed = anyio.Event()

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            events.append(json.loads(data))

    async def stop_when_done() -> None:
        while sum(ev["status"] == "succeeded" for ev in events) < expected:
            await anyio.sleep(0.05)
        worker.stop()

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await subscribed.wait()
            tg.start_soon(worker.run)
            await anyio.to_thread.run_sync(produce)
            await stop_when_done()
            while worker.stats.succeeded < expected:
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    await listener.aclose()
    return events, worker


async def test_at_concurrency_one_the_next_job_is_active_only_after_the_last_outcome(
    app_factory: AppFactory,
) -> None:
    app = app_factory(events_channel=f"ev-{uuid.uuid4().hex}")
    ran: list[str] = []

    @app.task(name="truth.quick")
    async def quick(n: int) -> None:
        ran.append(str(n))

    handles = []

    def produce() -> None:
        handles.extend(quick.delay(n) for n in range(30))

    events, _ = await run_watched(app, ["default"], produce, 30)

    assert len(ran) == 30
    assert most_active_at_once(events) == 1
    records = sorted(
        (app.client.record("default", h.id) for h in handles), key=lambda r: r.started_ms or 0
    )
    for before, after in itertools.pairwise(records):
        assert before.finished_ms is not None and after.started_ms is not None
        assert after.started_ms >= before.finished_ms, (before.id, after.id)


async def test_at_concurrency_one_on_two_queues_only_jobs_that_run_are_active(
    app_factory: AppFactory,
) -> None:
    app = app_factory(events_channel=f"ev-{uuid.uuid4().hex}")
    ran: list[str] = []

    @app.task(name="truth.nap")
    async def nap(label: str) -> None:
        ran.append(label)
        await anyio.sleep(0.02)

    def produce() -> None:
        for n in range(20):
            # Both queues' idle fetches are blocked when each pair arrives.
            nap.options(queue="a").delay(f"a{n}")
            nap.options(queue="b").delay(f"b{n}")
            anyio.from_thread.run(anyio.sleep, 0.06)

    events, worker = await run_watched(app, ["a", "b"], produce, 40)

    assert sorted(ran) == sorted([f"a{n}" for n in range(20)] + [f"b{n}" for n in range(20)])
    actives = [ev for ev in events if ev["status"] == "active"]
    assert len(actives) == 40, f"{len(actives) - 40} jobs were active without running"
    assert worker.stats.handed_back == 0
    assert most_active_at_once(events) == 1
