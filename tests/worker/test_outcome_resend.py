"""A batch of outcomes cut off half-way and sent again: each outcome is counted once.

The outcome writer sends a batch in several calls (one per queue and kind). When a later call
fails after earlier ones were answered, the batch is kept and written again; the scripts make the
repeat harmless in Redis, and the worker's stats, per-minute counters and ``--json`` lines must
not count the outcomes that had already landed a second time.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from taskforge import Settings, Taskforge
from taskforge.driver.requests import Op
from taskforge.errors import BrokerConnectionError
from taskforge.job import JobStatus
from taskforge.metrics import WorkerMetrics
from taskforge.protocol.brokers import AsyncBroker
from taskforge.worker.executor import Succeeded
from taskforge.worker.outage import Outage
from taskforge.worker.outcome_log import JsonLines
from taskforge.worker.outcomes import OutcomeWriter, Pending, WorkerStats
from taskforge.worker.slots import Slots
from taskforge.workflow.advance import WorkflowAdvancer
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio

WORKER = "resend-worker"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def proxy(redis_server: RedisServer | None) -> Iterator[FaultProxy]:
    if redis_server is None:
        pytest.skip("the fault proxy needs the session's private redis-server")
    with FaultProxy(redis_server.port) as proxy:
        yield proxy


class LosesSecondReply(AsyncBroker):
    """Through the proxy; once its first call is answered, the next reply is lost in transit."""

    def __init__(self, settings: Settings, proxy: FaultProxy):
        super().__init__(settings)
        self.proxy = proxy
        self.answered = 0

    async def run(self, op: Op[Any]) -> Any:
        reply = await super().run(op)
        self.answered += 1
        if self.answered == 1:
            self.proxy.lose_replies(1)
        return reply


def noop() -> None:
    """Does nothing."""


async def leased(app: Taskforge, queue: str, n: int) -> list[Pending]:
    """Enqueue ``n`` jobs on ``queue`` and lease them: pending outcomes that succeeded."""
    task = app.task(name=f"resend.noop.{queue}", queue=queue)(noop)
    for _ in range(n):
        await task.adelay()
    broker = app.client.abroker
    fetched = await broker.run(broker.ops.fetch(queue, n, WORKER))
    assert len(fetched.jobs) == n
    return [Pending(queue, lease, Succeeded(""), task.name, 1, 0.01) for lease in fetched.jobs]


async def test_a_batch_sent_again_after_a_lost_reply_counts_each_outcome_once(
    app_factory: Callable[..., Taskforge], proxy: FaultProxy
) -> None:
    app = app_factory()
    batch = [*await leased(app, "a", 2), *await leased(app, "b", 2)]
    settings = app.settings.model_copy(update={"redis_url": proxy.url(), "connect_retries": 0})
    broker = LosesSecondReply(settings, proxy)
    stats, metrics, out = WorkerStats(), WorkerMetrics(), io.StringIO()
    writer = OutcomeWriter(
        broker, Slots(0), Outage(WORKER), WorkflowAdvancer(broker),
        worker_id=WORKER, stats=stats, metrics=metrics, outcome_log=JsonLines(out),
    )  # fmt: skip
    for p in batch:
        writer.add(p)

    # Queue a's finish is answered, queue b's lands but its reply is lost: the batch goes again.
    await writer.flush_all()

    assert proxy.lost_replies == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(line["job_id"] for line in lines) == sorted(p.lease.id for p in batch)
    assert stats.processed == stats.succeeded == len(batch)
    assert metrics.outcomes == {("a", "succeeded"): 2, ("b", "succeeded"): 2}
    minute = int(time.time() // 60)
    ops = app.client.broker.ops
    counted = {q: app.client.broker.run(ops.recent_outcomes(q, [minute - 1, minute])) for q in "ab"}
    assert counted == {"a": {"done": 2}, "b": {"done": 2}}
    assert writer.slots.free == len(batch)
    await broker.aclose()


class FirstCallFailsLate(AsyncBroker):
    """Its first call takes a while and then fails as a dropped connection would (nothing
    written); every later call goes through."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.calls = 0

    async def run(self, op: Op[Any]) -> Any:
        self.calls += 1
        if self.calls == 1:
            op.close()
            await anyio.sleep(0.2)
            raise BrokerConnectionError("connection reset (test)")
        return await super().run(op)


async def test_flush_all_waits_for_the_batch_the_flush_loop_is_writing(
    app_factory: Callable[..., Taskforge],
) -> None:
    # The worker's shutdown: the flush loop has taken the last outcomes and is writing them
    # when run() calls flush_all(), then cancels the flush loop. A write that fails puts them
    # back to be sent again: flush_all() must send them, not return because none was queued.
    app = app_factory()
    (pending,) = await leased(app, "c", 1)
    broker = FirstCallFailsLate(app.settings)
    writer = OutcomeWriter(
        broker, Slots(0), Outage(WORKER), WorkflowAdvancer(broker),
        worker_id=WORKER, stats=WorkerStats(), metrics=WorkerMetrics(),
    )  # fmt: skip
    async with anyio.create_task_group() as services:
        services.start_soon(writer.flush_loop)
        writer.add(pending)
        with anyio.fail_after(5):
            while not writer.writing:
                await anyio.sleep(0)
            await writer.flush_all()
        services.cancel_scope.cancel()

    record = app.client.record("c", pending.lease.id)
    assert record.status == JobStatus.SUCCEEDED
    assert writer.unwritten == 0 and writer.slots.free == 1
    await broker.aclose()
