"""Workflows on a real 3-primary Redis Cluster: members' queues and the workflow's state sit in
different slots (and nodes); the outbox and the idempotent advance carry a chain and a chord."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import anyio
import pytest
from redis.crc import key_slot

from taskforge import (
    Settings,
    Taskforge,
    Worker,
    WorkflowFailedError,
    WorkflowHandle,
    chain,
    chord,
    group,
)
from taskforge.protocol.keys import QueueKeys
from taskforge.workflow.ops import WorkflowKeys
from tests.support.cluster import LocalCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    try:
        deployment = LocalCluster(primaries=3).start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Redis Cluster: {exc}")
    yield deployment
    deployment.cleanup()


def cluster_app(url: str) -> tuple[Taskforge, list[int]]:
    app = Taskforge(Settings(redis_url=url, prefix=f"tfwc-{uuid.uuid4().hex[:8]}"))
    totals: list[int] = []

    @app.task(name="c.add", queue="left")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="c.mul", queue="right")
    def mul(a: int, b: int) -> int:
        return a * b

    @app.task(name="c.total", queue="right")
    def total(values: list[int]) -> int:
        totals.append(sum(values))
        return sum(values)

    return app, totals


def run_until_done(app: Taskforge, handle: WorkflowHandle) -> None:
    """Run a worker on both queues until the workflow ends. (Not burst mode: a burst worker's
    idle queue stops fetching, and the next step may land in it later.)"""

    async def go() -> None:
        worker = Worker(app.settings, app.registry, queues=["left", "right"], block_s=0.5)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                with contextlib.suppress(WorkflowFailedError):
                    await handle.aresult(timeout=25)
                worker.stop()

    anyio.run(go)


def test_a_chain_across_queues_in_other_slots_completes(cluster: LocalCluster) -> None:
    app, _ = cluster_app(cluster.url)
    add, mul = app.registry.get("c.add"), app.registry.get("c.mul")

    h = chain(add.s(1, 2), mul.s(10), add.s(4)).delay()
    run_until_done(app, h)

    slots = {
        key_slot(WorkflowKeys(app.settings.prefix, h.id).base.encode()),
        key_slot(QueueKeys(app.settings.prefix, "left").base.encode()),
        key_slot(QueueKeys(app.settings.prefix, "right").base.encode()),
    }
    assert len(slots) == 3
    assert h.result(timeout=10) == 34
    assert h.results(timeout=10) == [3, 30, 34]
    app.client.close()


def test_a_chord_on_a_cluster_runs_its_callback_once(cluster: LocalCluster) -> None:
    app, totals = cluster_app(cluster.url)
    add, total = app.registry.get("c.add"), app.registry.get("c.total")

    c = chord(group(add.s(i, i) for i in range(200)), total.s()).delay()
    run_until_done(app, c)

    assert c.result(timeout=10) == sum(2 * i for i in range(200))
    assert totals == [sum(2 * i for i in range(200))]
    assert [m.status for m in c.info().members] == ["succeeded"] * 201
    app.client.close()
