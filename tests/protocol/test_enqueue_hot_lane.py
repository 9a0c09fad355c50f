"""A producer's enqueue goes over one connection held for it (the hot lane); any trouble on that
connection falls back to redis-py's pooled path, which loses and doubles nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
import pytest
import redis

from taskforge import JobPriority, Taskforge
from taskforge.protocol.keys import QueueKeys

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def ready_ids(app: Taskforge, r: redis.Redis) -> list[str]:
    keys = QueueKeys(app.settings.prefix, "default")
    return r.lrange(keys.ready(JobPriority.NORMAL), 0, -1)  # type: ignore[return-value]


def make_noop(app: Taskforge) -> Callable[[], object]:
    @app.task(name="lane.noop")
    def noop() -> None:
        """Does nothing."""

    return noop.delay


def test_a_warm_delay_is_one_script_call_and_nothing_else(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    delay = make_noop(app_factory())
    delay()
    before = r.info("commandstats")

    delay()

    after = r.info("commandstats")
    sent = {k: after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after}
    assert sent["cmdstat_evalsha"] == 1
    assert sent.get("cmdstat_ping", 0) == 0  # no health check, no pool probe
    assert sent["cmdstat_info"] == 1  # our own INFO


def test_delay_after_redis_dropped_every_connection_enqueues_once(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()
    delay = make_noop(app)
    first = delay()

    r.client_kill_filter(_type="normal", skipme=True)
    second = delay()

    assert ready_ids(app, r) == [first.id, second.id]  # type: ignore[attr-defined]


def test_delay_after_redis_lost_its_scripts_loads_them_and_enqueues(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()
    delay = make_noop(app)
    first = delay()

    r.script_flush()
    second = delay()

    assert ready_ids(app, r) == [first.id, second.id]  # type: ignore[attr-defined]


def test_threads_enqueueing_at_once_lose_and_double_no_job(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()
    delay = make_noop(app)
    ids: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        for _ in range(40):
            job_id = delay().id  # type: ignore[attr-defined]
            with lock:
                ids.append(job_id)

    threads = [threading.Thread(target=produce) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert len(ids) == 240
    assert sorted(ready_ids(app, r)) == sorted(ids)


@pytest.mark.anyio
async def test_adelay_after_redis_dropped_every_connection_enqueues_once(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()

    @app.task(name="lane.anoop")
    async def anoop() -> None:
        """Does nothing."""

    first = await anoop.adelay()
    r.client_kill_filter(_type="normal", skipme=True)
    second = await anoop.adelay()
    r.script_flush()
    third = await anoop.adelay()

    assert ready_ids(app, r) == [first.id, second.id, third.id]


@pytest.mark.anyio
async def test_adelay_from_many_tasks_at_once_loses_and_doubles_no_job(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()

    @app.task(name="lane.anoop")
    async def anoop() -> None:
        """Does nothing."""

    ids: list[str] = []

    async def produce() -> None:
        for _ in range(20):
            ids.append((await anoop.adelay()).id)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(produce)

    assert len(ids) == 200
    assert sorted(ready_ids(app, r)) == sorted(ids)


@pytest.mark.anyio
async def test_an_adelay_cancelled_mid_call_leaves_the_next_one_working(
    app_factory: AppFactory, r: redis.Redis
) -> None:
    app = app_factory()

    @app.task(name="lane.anoop")
    async def anoop() -> None:
        """Does nothing."""

    await anoop.adelay()
    with anyio.move_on_after(0):  # cancelled at its first await: the call may be half sent
        await anoop.adelay()
    after = await anoop.adelay()

    assert after.id in ready_ids(app, r)
    assert 2 <= len(ready_ids(app, r)) <= 3
