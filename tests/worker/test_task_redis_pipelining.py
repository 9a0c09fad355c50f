"""``current_job().redis`` batches the bodies' concurrent commands on one connection."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

from taskforge import Settings, Taskforge, Worker, current_job
from taskforge.driver.autopipe import AutoPipelinedRedis, shares_connection
from taskforge.driver.connection import async_client
from taskforge.driver.task_clients import TaskClients
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio
AppFactory = Callable[..., Taskforge]
SettingsFactory = Callable[..., Settings]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone: it is stopped, killed and restarted."""
    server = RedisServer().start()
    yield server
    server.cleanup()


def _connections(client: Any) -> int:
    pool = client.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def _until_sent(client: AutoPipelinedRedis, calls: int) -> None:
    """Wait (bounded) until ``calls`` commands were queued, then taken off the queue by the
    flusher, which writes them in the same step (the connection is up)."""
    with anyio.fail_after(5):
        while len(client._pending) < calls:
            await asyncio.sleep(0)
        while client._pending:
            await asyncio.sleep(0)


async def _mixed(client: Any, key: str) -> list[Any]:
    """A few commands whose replies redis-py's callbacks reshape (types included)."""
    return [
        await client.set(f"{key}:s", "v"),
        await client.get(f"{key}:s"),
        await client.incr(f"{key}:n"),
        await client.hset(f"{key}:h", mapping={"a": "1", "b": "2"}),
        await client.hgetall(f"{key}:h"),
        await client.zadd(f"{key}:z", {"m": 1.5}),
        await client.zrange(f"{key}:z", 0, -1, withscores=True),
        await client.expire(f"{key}:s", 60),
        await client.exists(f"{key}:s", f"{key}:none"),
        await client.mget([f"{key}:s", f"{key}:none"]),
        await client.get(f"{key}:none"),
        await client.sadd(f"{key}:set", "x", "y"),
        await client.smembers(f"{key}:set"),
        await client.ping(),
    ]


async def test_concurrent_bodies_get_their_own_replies_typed_as_redis_py_would(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    got: dict[int, list[Any]] = {}

    @app.task
    async def body(n: int) -> None:
        got[n] = await _mixed(current_job().redis, f"{app.settings.prefix}:body:{n}")
        got[-1] = [_connections(current_job().redis)]

    for n in range(60):
        await body.adelay(n)
    worker = Worker(app.settings, app.registry, concurrency=30, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        await worker.run()
    plain = async_client(app.settings)
    expected = await _mixed(plain, f"{app.settings.prefix}:plain")
    await plain.aclose()

    assert expected[2:5] == [1, 2, {"a": "1", "b": "2"}]
    assert all(got[n] == expected for n in range(60))
    assert got[-1] == [1]  # thirty bodies at once, one connection between them


async def test_an_error_reply_reaches_only_its_caller(settings_factory: SettingsFactory) -> None:
    clients = TaskClients(settings_factory(), concurrency=10)
    client = clients.asyncio_client()
    key = f"{clients.settings.prefix}:k"
    await client.set(f"{key}:text", "not a number")

    results = await asyncio.gather(
        *[client.incr(f"{key}:n") for _ in range(5)],
        client.incr(f"{key}:text"),
        *[client.incr(f"{key}:n") for _ in range(5)],
        return_exceptions=True,
    )
    await clients.aclose()

    assert isinstance(results[5], redis.ResponseError)
    assert results[:5] + results[6:] == list(range(1, 11))


async def test_a_blocking_command_does_not_stall_the_batched_ones(
    settings_factory: SettingsFactory,
) -> None:
    clients = TaskClients(settings_factory(), concurrency=10)
    client = clients.asyncio_client()
    key = f"{clients.settings.prefix}:k"
    popping = asyncio.ensure_future(client.blpop([f"{key}:list"], timeout=10))

    counted = await asyncio.gather(*[client.incr(f"{key}:n") for _ in range(20)])
    still_waiting = not popping.done()
    await client.rpush(f"{key}:list", "x")
    with anyio.fail_after(10):
        popped = await popping
    await clients.aclose()

    assert counted == list(range(1, 21))
    assert still_waiting
    assert popped == (f"{key}:list", "x")
    assert not shares_connection(("BLPOP", "k", 0))
    assert not shares_connection(("XREAD", "BLOCK", 0, "STREAMS", "s", "$"))
    assert shares_connection(("XREAD", "COUNT", 1, "STREAMS", "s", "0"))


async def test_redis_killed_mid_batch_fails_the_batch_then_the_next_command_reconnects(
    own_redis: RedisServer,
) -> None:
    clients = TaskClients(Settings(redis_url=own_redis.url, prefix="tft-kill"), concurrency=10)
    client = clients.asyncio_client()
    assert isinstance(client, AutoPipelinedRedis)
    assert await client.incr("n") == 1
    assert own_redis.proc is not None

    own_redis.proc.send_signal(signal.SIGSTOP)  # the batch is written but never answered
    calls = [asyncio.ensure_future(client.incr("n")) for _ in range(10)]
    await _until_sent(client, 10)
    own_redis.kill()
    with anyio.fail_after(10):
        failed = await asyncio.gather(*calls, return_exceptions=True)
    own_redis.start()
    after = await client.incr("n")
    await clients.aclose()

    assert all(isinstance(f, redis.ConnectionError) for f in failed), failed
    assert after == 1  # a fresh server: the command went through on a new connection


async def test_a_connection_the_server_closed_while_idle_is_replaced_before_the_next_batch(
    own_redis: RedisServer,
) -> None:
    clients = TaskClients(Settings(redis_url=own_redis.url, prefix="tft-idle"), concurrency=10)
    client = clients.asyncio_client()
    assert isinstance(client, AutoPipelinedRedis)
    assert await client.incr("n") == 1

    own_redis.client().client_kill_filter(_type="normal", skipme=True)
    with anyio.fail_after(5):
        while not client._conn._reader.at_eof():  # bounded: until the loop has seen the close
            await asyncio.sleep(0.01)
    after = await client.incr("n")
    await clients.aclose()

    assert after == 2


async def test_a_caller_cancelled_mid_batch_leaves_the_later_replies_in_step(
    own_redis: RedisServer,
) -> None:
    clients = TaskClients(Settings(redis_url=own_redis.url, prefix="tft-cancel"), concurrency=10)
    client = clients.asyncio_client()
    assert isinstance(client, AutoPipelinedRedis)
    await client.ping()
    assert own_redis.proc is not None

    own_redis.proc.send_signal(signal.SIGSTOP)
    calls = [asyncio.ensure_future(client.incrby(f"k{n}", n)) for n in range(1, 7)]
    await _until_sent(client, 6)
    calls[1].cancel()
    calls[4].cancel()
    own_redis.proc.send_signal(signal.SIGCONT)
    with anyio.fail_after(10):
        replies = await asyncio.gather(*calls, return_exceptions=True)
    later = await asyncio.gather(client.incrby("k2", 0), client.get("k5"), client.incrby("k6", 0))
    await clients.aclose()

    assert [replies[n] for n in (0, 2, 3, 5)] == [1, 3, 4, 6]
    assert all(isinstance(replies[n], asyncio.CancelledError) for n in (1, 4))
    assert list(later) == [2, "5", 6]  # the cancelled commands ran; their replies were dropped


async def test_closing_the_clients_ends_the_flusher_and_fails_nothing_answered(
    settings_factory: SettingsFactory,
) -> None:
    clients = TaskClients(settings_factory(), concurrency=2)
    client = clients.asyncio_client()
    assert isinstance(client, AutoPipelinedRedis)
    await client.ping()
    flusher = client._flusher

    await clients.aclose()

    assert flusher is not None and flusher.done()
    assert client._flusher is None
