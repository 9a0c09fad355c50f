"""``current_job().redis`` / ``.sync_redis``: the worker's Redis clients, lent to task bodies."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from taskforge import Taskforge, TaskforgeError, Worker, current_job
from taskforge.driver.connection import sync_client

pytestmark = pytest.mark.anyio
AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _drain(app: Taskforge, *, concurrency: int = 10) -> Worker:
    worker = Worker(app.settings, app.registry, concurrency=concurrency, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        await worker.run()
    return worker


def _peek(app: Taskforge, key: str) -> Any:
    client = sync_client(app.settings)
    try:
        return client.get(key)
    finally:
        client.close()


async def test_async_tasks_incr_through_the_worker_client(app_factory: AppFactory) -> None:
    app = app_factory()
    key = f"{app.settings.prefix}:counter"
    clients: set[int] = set()

    @app.task
    async def bump() -> int:
        client = current_job().redis
        clients.add(id(client))
        return int(await client.incr(key))

    handles = [await bump.adelay() for _ in range(20)]
    await _drain(app, concurrency=5)

    assert sorted([await h.aresult(timeout=5) for h in handles]) == list(range(1, 21))
    assert _peek(app, key) == "20"
    assert len(clients) == 1  # one client per worker, not one per job


async def test_sync_tasks_incr_through_the_blocking_client(app_factory: AppFactory) -> None:
    app = app_factory()
    key = f"{app.settings.prefix}:counter"
    threads: set[int] = set()

    @app.task
    def bump() -> int:
        threads.add(threading.get_ident())
        client = current_job().sync_redis
        assert isinstance(client, redis.Redis)
        return int(client.incr(key))

    handles = [await bump.adelay() for _ in range(12)]
    await _drain(app, concurrency=4)

    assert sorted([await h.aresult(timeout=5) for h in handles]) == list(range(1, 13))
    assert _peek(app, key) == "12"
    assert threads and threading.get_ident() not in threads


async def test_the_asyncio_client_in_a_sync_task_says_which_one_to_use(
    app_factory: AppFactory,
) -> None:
    app = app_factory()

    @app.task(max_retries=0)
    def wrong() -> None:
        current_job().redis  # noqa: B018 - the property raises

    handle = await wrong.adelay()
    await _drain(app)

    info = await handle.ainfo()
    assert info.status == "dead"
    assert "current_job().sync_redis" in (info.error or "")


async def test_the_worker_closes_the_clients_it_made_when_it_stops(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    seen: dict[str, Any] = {}

    @app.task
    async def ping() -> None:
        seen["client"] = current_job().redis
        await seen["client"].ping()

    await ping.adelay()
    worker = await _drain(app)

    connections = seen["client"].connection_pool._available_connections
    assert connections  # the job's command went over one of them
    assert not any(c.is_connected for c in connections)
    assert worker.task_clients._async is None  # dropped: a later run makes a new one


async def test_more_jobs_at_once_than_max_connections_each_get_a_connection(
    app_factory: AppFactory,
) -> None:
    app = app_factory(max_connections=2)
    key = f"{app.settings.prefix}:list"
    started = anyio.Event()
    waiting: list[int] = []

    @app.task
    async def hold() -> None:
        waiting.append(1)
        if len(waiting) == 4:
            started.set()
        await started.wait()
        # All four hold a connection at once: each blocks on an empty list for a moment.
        client = current_job().redis
        await client.blpop([f"{key}:never"], timeout=0.2)
        await client.rpush(key, "x")

    for _ in range(4):
        await hold.adelay()
    await _drain(app, concurrency=4)

    assert int(sync_client(app.settings).llen(key)) == 4


def test_eager_mode_lends_the_testbeds_redis(any_url: str, prefix: str) -> None:
    app = Taskforge()
    app.configure(prefix=prefix)

    @app.task
    async def bump_async() -> int:
        key = f"{current_job().job.queue}:{app.settings.prefix}:counter"
        return int(await current_job().redis.incr(key))

    @app.task
    def bump_sync() -> int:
        key = f"{current_job().job.queue}:{app.settings.prefix}:counter"
        return int(current_job().sync_redis.incr(key))

    with app.testing(redis_url=any_url) as bed:
        first = bump_async.delay().result(timeout=5)
        second = bump_sync.delay().result(timeout=5)
        stored = bed.client.broker.client.get(f"default:{bed.settings.prefix}:counter")

    assert (first, second, stored) == (1, 2, "2")


def test_a_direct_call_has_no_worker_client_and_says_how_to_get_one() -> None:
    app = Taskforge()

    @app.task
    def bump() -> int:
        return int(current_job().sync_redis.incr("k"))

    with pytest.raises(TaskforgeError, match=r"called directly.*app\.testing\(\)"):
        bump()
