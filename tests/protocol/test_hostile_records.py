"""A hostile review of the compact record: damage written while a job runs, unreadable outcome
fields, and what signing covers. Each against a real Redis, with a burst worker."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
import redis

from taskforge import Taskforge, Worker, current_job
from taskforge.protocol.keys import QueueKeys

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def raw_redis(app: Taskforge) -> redis.Redis:
    return redis.Redis.from_url(app.settings.redis_url, decode_responses=True)


async def drain(app: Taskforge, limit_s: float = 30) -> None:
    worker = Worker(app.settings, app.registry, concurrency=4, burst=True, block_s=0.5)
    with anyio.fail_after(limit_s):
        await worker.run()


@pytest.mark.parametrize("value", ["nan", "inf"])
async def test_attempts_damaged_while_a_job_runs_does_not_fail_the_outcome_batch(
    app_factory: AppFactory, value: str
) -> None:
    # A stray HSET of 'nan' into a running job's attempts made finish.lua's event encoder
    # raise after the record was written: the batch's inflight entries stayed, so finished
    # jobs were reclaimed and run again (or buried as poison) when their leases ran out.
    app = app_factory()
    k = QueueKeys(app.settings.prefix, "default")

    @app.task(name="hostile.damage_own_attempts")
    async def damage_own_attempts() -> None:
        job = current_job()
        await job.redis.hset(k.job(job.job.id), "n", value)

    @app.task(name="hostile.count")
    async def count() -> None:
        await current_job().redis.incr(f"{app.settings.prefix}:ran")

    victim = damage_own_attempts.delay().id
    others = [count.delay().id for _ in range(6)]

    await drain(app)

    r = raw_redis(app)
    assert r.zcard(k.inflight) == 0
    assert r.hget(k.job(victim), "s") == "d"
    assert [r.hget(k.job(i), "s") for i in others] == ["d"] * 6
    assert r.get(f"{app.settings.prefix}:ran") == "6"


def test_an_unreadable_result_reads_as_unknown_not_an_error(app_factory: AppFactory) -> None:
    app = app_factory()
    handle = app.task(name="hostile.noop")(lambda: None).delay()
    r = raw_redis(app)
    r.hset(QueueKeys(app.settings.prefix, "default").job(handle.id), "result", "{")

    record = handle.info()

    assert record.result is None
    assert "result" in record.unreadable_fields


def test_a_stray_key_of_another_type_does_not_stop_the_upgrade(app_factory: AppFactory) -> None:
    # One non-hash key under the old record prefix made HGETALL fail the whole batch: every
    # run raised at the same key and no record of the queue could ever be moved.
    from taskforge import Admin

    app = app_factory()
    r = raw_redis(app)
    k = QueueKeys(app.settings.prefix, "default")
    r.sadd(f"{app.settings.prefix}:queues", "default")
    envelope = '{"id":"old-1","args":[1],"kwargs":{},"task":"up.any","queue":"default"}'
    r.hset(f"{k.base}:job:old-1", mapping={"envelope": envelope, "task": "up.any",
                                           "status": "queued", "created_ms": "1"})  # fmt: skip
    r.set(f"{k.base}:job:stray", "not a record")

    with Admin(app.settings) as admin:
        (done,) = admin.upgrade_records(["default"])

    assert done.moved == 1
    assert r.hget(k.job("old-1"), "a") == "[1]"
    assert r.get(f"{k.base}:job:stray") == "not a record"
