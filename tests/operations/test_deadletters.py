"""The dead-letter API (taskforge.deadletters) against a real Redis: a purge deletes only jobs
that are still dead when its script runs, whatever a concurrent requeue does."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import redis

from taskforge import Settings, Taskforge, Worker
from taskforge.deadletters import DeadFilter, DeadOps, DeadSelection
from taskforge.protocol.brokers import SyncBroker

AppFactory = Callable[..., Taskforge]


def boom(n: int) -> None:
    """Always fails."""
    raise ValueError(f"boom {n}")


def dead_jobs(app: Taskforge, count: int) -> list[str]:
    """``count`` jobs of queue ``default``, run once and dead-lettered."""
    task = app.task(name="dl.boom", max_retries=0)(boom)
    ids = [task.delay(i).id for i in range(count)]
    worker = Worker(app.settings, app.registry, queues=["default"], burst=True, block_s=0.2)
    anyio.run(worker.run)
    return ids


def fates(settings: Settings, ids: list[str]) -> dict[str, tuple[bool, bool, bool]]:
    """Per job: (record exists, in a ready list, in the dead set)."""
    broker = SyncBroker(settings)
    k = broker.ops.keys("default")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        ready = {i for key in k.ready_lists for i in client.lrange(key, 0, -1)}
        dead = set(client.zrange(k.dead, 0, -1))
        return {i: (bool(client.exists(k.job(i))), i in ready, i in dead) for i in ids}
    finally:
        client.close()
        broker.close()


def test_a_job_revived_between_the_read_and_the_purge_is_not_deleted(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    ids = dead_jobs(app, 3)
    broker = SyncBroker(app.settings)
    dead = DeadOps(broker.ops)
    selection = broker.run(dead.select(["default"], flt=DeadFilter(), every=True))  # the read

    assert broker.run(broker.ops.revive("default", [ids[1]])) == 1  # a concurrent revive
    result = broker.run(dead.apply("purge", selection))  # the purge of what was read
    broker.close()

    assert selection.count == 3 and (result.total, result.skipped) == (2, 1)
    assert fates(app.settings, ids) == {
        ids[0]: (False, False, False),
        ids[1]: (True, True, False),  # requeued, record and all
        ids[2]: (False, False, False),
    }


def test_purge_racing_requeue_never_leaves_a_requeued_job_without_its_record(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    ids = dead_jobs(app, 60)
    selection = DeadSelection({"default": list(ids)}, [])
    start = threading.Barrier(2)
    counts: dict[str, int] = {}

    def purge() -> None:
        broker = SyncBroker(app.settings)
        start.wait(timeout=30)
        counts["purged"] = broker.run(DeadOps(broker.ops).apply("purge", selection, batch=4)).total
        broker.close()

    def requeue() -> None:
        broker = SyncBroker(app.settings)
        start.wait(timeout=30)
        counts["requeued"] = sum(
            broker.run(broker.ops.revive("default", [i])) for i in reversed(ids)
        )
        broker.close()

    threads = [threading.Thread(target=purge), threading.Thread(target=requeue)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    found = fates(app.settings, ids)
    assert counts["purged"] + counts["requeued"] == len(ids)
    assert sum(1 for f in found.values() if f == (True, True, False)) == counts["requeued"]
    assert sum(1 for f in found.values() if f == (False, False, False)) == counts["purged"]
