"""An enqueue whose reply is lost: ``created`` stays exact when the call is re-sent, and an
enqueue that fails on a lost connection names its jobs so the caller can re-send them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from taskforge import BrokerConnectionError, Settings, Taskforge
from taskforge.job import JobPriority
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer


def add(a: int, b: int = 0) -> int:
    """Adds."""
    return a + b


@pytest.fixture
def proxy(redis_server: RedisServer | None) -> Iterator[FaultProxy]:
    if redis_server is None:
        pytest.skip("the fault proxy needs the session's private redis-server")
    with FaultProxy(redis_server.port) as proxy:
        yield proxy


@pytest.fixture
def proxied(proxy: FaultProxy, prefix: str) -> Callable[..., Taskforge]:
    """An app that talks to Redis through the proxy, its connection and script already warm."""
    apps: list[Taskforge] = []

    def make(**overrides: Any) -> Taskforge:
        app = Taskforge(Settings(redis_url=proxy.url(), prefix=prefix, **overrides))
        app.task(name="amb.add")(add)
        app.registry.get("amb.add").options(job_id="warm-up").delay(0)
        apps.append(app)
        return app

    yield make  # type: ignore[misc]
    for app in apps:
        app.client.close()


def ready_ids(app: Taskforge) -> list[str]:
    key = app.client.broker.ops.keys("default").ready(JobPriority.NORMAL)
    return [i for i in app.client.broker.client.lrange(key, 0, -1) if not i.startswith("warm-up")]  # type: ignore[union-attr]


def test_a_delay_whose_reply_was_lost_reports_created(
    proxy: FaultProxy, proxied: Callable[..., Taskforge]
) -> None:
    app = proxied()
    proxy.lose_replies(1)

    handle = app.registry.get("amb.add").delay(1, 2)

    assert proxy.lost_replies == 1
    assert handle.created is True
    assert ready_ids(app) == [handle.id]


def test_a_bulk_enqueue_whose_chunk_reply_was_lost_reports_every_job_created(
    proxy: FaultProxy, proxied: Callable[..., Taskforge]
) -> None:
    app = proxied()
    add_task = app.registry.get("amb.add")
    calls = [add_task.s(i) for i in range(600)]  # three chunks of at most 250

    async def send() -> list[bool]:
        await add_task.options(job_id="warm-up-async").adelay(0)  # connect, load the script
        proxy.lose_replies(1)
        handles = await app.aenqueue_many(calls)
        return [h.created for h in handles]

    created = anyio.run(send)

    assert proxy.lost_replies == 1
    assert created == [True] * 600
    assert len(ready_ids(app)) == 600


def test_a_duplicate_id_within_one_call_is_still_reported_existing(
    proxied: Callable[..., Taskforge],
) -> None:
    app = proxied()
    add_task = app.registry.get("amb.add").options(job_id="twice")

    handles = app.enqueue_many([add_task.s(1), add_task.s(2)])

    assert [h.created for h in handles] == [True, False]


def test_a_re_send_by_another_call_reports_existing(proxied: Callable[..., Taskforge]) -> None:
    app = proxied()
    add_task = app.registry.get("amb.add").options(job_id="someone-else")

    first, second = add_task.delay(1), add_task.delay(1)

    assert (first.created, second.created) == (True, False)


def test_an_enqueue_cut_off_after_reaching_redis_names_its_job(
    proxy: FaultProxy, proxied: Callable[..., Taskforge]
) -> None:
    app = proxied(socket_timeout_s=0.5, connect_retries=1)
    add_task = app.registry.get("amb.add")
    proxy.half_open()  # the request reaches Redis; no reply ever comes back

    with pytest.raises(BrokerConnectionError) as caught:
        add_task.delay(1, 2)
    proxy.heal()

    job_id = caught.value.job_id
    assert job_id is not None and caught.value.job_ids == (job_id,)
    assert job_id in str(caught.value) and "re-send it with the same id" in str(caught.value)
    assert ready_ids(app) == [job_id]  # it was written: only the reply was lost
    again = add_task.options(job_id=job_id).delay(1, 2)
    assert again.created is False
    assert ready_ids(app) == [job_id]


def test_an_async_bulk_enqueue_cut_off_names_every_job(
    proxy: FaultProxy, proxied: Callable[..., Taskforge]
) -> None:
    app = proxied(socket_timeout_s=0.5, connect_retries=1)
    add_task = app.registry.get("amb.add")
    calls = [add_task.s(i) for i in range(3)]

    async def send() -> None:
        await app.aenqueue_many(calls)

    proxy.half_open()
    with pytest.raises(BrokerConnectionError) as caught:
        anyio.run(send)
    proxy.heal()

    assert len(caught.value.job_ids) == 3
    assert caught.value.job_id is None
    assert "error.job_ids" in str(caught.value)
