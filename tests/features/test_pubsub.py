"""The guide's Redis client: JSON pub/sub that survives restarts, health checks, the SSE example."""

from __future__ import annotations

import http.client
import importlib.util
import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from taskforge import BrokerError, RedisClient, SerializationError, Settings, Taskforge, Worker
from taskforge.pubsub import (
    JOB_UPDATES,
    WORKFLOW_EVENTS,
    configure_redis_client,
    get_redis_client,
    tenant_channel,
)
from tests.support.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(any_url: str) -> AsyncIterator[RedisClient]:
    rc = RedisClient(Settings(redis_url=any_url))
    yield rc
    await rc.aclose()


async def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll an async predicate until it is truthy (bounded)."""
    with anyio.fail_after(timeout_s):
        while not (value := await predicate()):
            await anyio.sleep(0.01)
    return value


async def collect(
    source: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]], count: int
) -> None:
    """Append messages from ``source`` until ``count`` arrived."""
    async for message in source:
        into.append(message)
        if len(into) >= count:
            return


async def test_subscribe_yields_the_published_dicts(client: RedisClient, prefix: str) -> None:
    channel = f"{prefix}:{WORKFLOW_EVENTS}"
    received: list[dict[str, Any]] = []
    ready = anyio.Event()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, client.subscribe(channel, ready=ready), received, 2)
            await ready.wait()
            first = await client.publish(channel, {"event_type": "workflow.started", "n": 1})
            await client.publish(channel, {"event_type": "workflow.completed", "n": 2})

    assert first == 1
    assert received == [
        {"channel": channel, "data": {"event_type": "workflow.started", "n": 1}},
        {"channel": channel, "data": {"event_type": "workflow.completed", "n": 2}},
    ]


async def test_pattern_subscribe_sees_every_tenants_channel(client: RedisClient) -> None:
    received: list[dict[str, Any]] = []
    ready = anyio.Event()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            pattern = tenant_channel("*")
            tg.start_soon(collect, client.psubscribe(pattern, ready=ready), received, 2)
            await ready.wait()
            await client.publish_workflow_event({"event_type": "x", "tenant_id": "t1"})
            await client.publish_workflow_event({"event_type": "y"}, tenant_id="t2")

    assert [(m["channel"], m["pattern"], m["data"]["event_type"]) for m in received] == [
        ("workflow:events:tenant:t1", "workflow:events:tenant:*", "x"),
        ("workflow:events:tenant:t2", "workflow:events:tenant:*", "y"),
    ]


async def test_messages_that_are_not_json_objects_are_skipped(
    client: RedisClient, prefix: str
) -> None:
    channel = f"{prefix}:system:alerts"
    received: list[dict[str, Any]] = []
    ready = anyio.Event()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, client.subscribe(channel, ready=ready), received, 1)
            await ready.wait()
            await client.client.publish(channel, "not json")
            await client.client.publish(channel, "[1, 2]")
            await client.publish(channel, {"level": "critical"})

    assert received == [{"channel": channel, "data": {"level": "critical"}}]


async def test_publish_refuses_what_json_cannot_carry(client: RedisClient) -> None:
    with pytest.raises(SerializationError):
        await client.publish(JOB_UPDATES, {"x": object()})


async def test_subscription_survives_a_redis_restart() -> None:
    server = RedisServer().start()
    # No redis-py retries: the resubscription under test is RedisClient's own.
    rc = RedisClient(Settings(redis_url=server.url, connect_retries=0))
    received: list[dict[str, Any]] = []
    ready = anyio.Event()

    async def delivered_after_restart() -> bool:
        # Pub/sub does not replay: publish until the resubscribed listener hears one.
        with suppress(BrokerError):
            await rc.publish(JOB_UPDATES, {"job_id": "b", "status": "queued"})
        await anyio.sleep(0.02)
        return any(m["data"]["job_id"] == "b" for m in received)

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, rc.subscribe(JOB_UPDATES, ready=ready), received, 100)
                await ready.wait()
                await rc.publish(JOB_UPDATES, {"job_id": "a", "status": "queued"})
                await wait_until(lambda: _async(len(received) == 1))

                server.restart()  # SIGKILL, then a new server on the same port
                await wait_until(delivered_after_restart)
                tg.cancel_scope.cancel()
    finally:
        await rc.aclose()
        server.cleanup()

    assert [m["data"]["job_id"] for m in received][:2] == ["a", "b"]


async def _async(value: bool) -> bool:
    return value


async def test_health_check_reports_the_guides_fields(redis_url: str, prefix: str) -> None:
    rc = RedisClient(Settings(redis_url=redis_url, prefix=prefix))

    health = await rc.health_check()

    assert health["connected"] is True
    assert health["status"] in ("healthy", "degraded")
    for field in ("latency_ms", "version", "used_memory", "connected_clients", "uptime_seconds"):
        assert health[field] is not None
    await rc.aclose()


async def test_health_check_of_an_unreachable_redis_says_so() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    rc = RedisClient(Settings(redis_url=url, connect_retries=0))

    health = await rc.health_check()

    assert (health["status"], health["connected"]) == ("unhealthy", False)
    assert "error" in health


async def test_get_redis_client_is_one_awaitable_process_wide_client(redis_url: str) -> None:
    configured = configure_redis_client(Settings(redis_url=redis_url))
    try:
        assert await get_redis_client() is configured
        assert await get_redis_client() is await get_redis_client()
    finally:
        configure_redis_client(Settings(redis_url="memory://"))


# ------------------------------------------------------------------------------- SSE example


def _load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _read_stream(port: int, path: str, subscribed: threading.Event) -> tuple[int, str, list[str]]:
    """A real HTTP client reading an event stream to its end."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        lines = []
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            lines.append(line)
            if line == ": subscribed":
                subscribed.set()
        return response.status, response.getheader("content-type") or "", lines
    finally:
        conn.close()


async def test_sse_example_streams_one_jobs_updates_to_a_real_http_client(
    app_factory: Callable[..., Taskforge],
) -> None:
    sse = _load_example("sse_job_updates")
    tf = app_factory()

    @tf.task(name="sse.add")
    async def add(a: int, b: int) -> int:
        return a + b

    events = RedisClient(tf.settings)
    subscribed = threading.Event()
    result: list[tuple[int, str, list[str]]] = []

    async def read() -> None:
        path = "/jobs/job-sse-1/events"
        result.append(await anyio.to_thread.run_sync(_read_stream, port, path, subscribed))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            port = await tg.start(sse.serve, sse.create_app(tf, events), "127.0.0.1", 0)
            tg.start_soon(read)
            assert await anyio.to_thread.run_sync(subscribed.wait, 10)
            await add.adelay(1, 1)  # another job: not in this stream
            await add.options(job_id="job-sse-1").adelay(2, 3)
            await Worker(tf.settings, tf.registry, burst=True).run()
            await wait_until(lambda: _async(bool(result)))  # the stream ended by itself
            tg.cancel_scope.cancel()
    await events.aclose()

    status, content_type, lines = result[0]
    data = [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]
    assert (status, content_type) == (200, "text/event-stream")
    assert [d["status"] for d in data] == ["queued", "active", "succeeded"]
    assert {d["job_id"] for d in data} == {"job-sse-1"}


async def test_sse_example_answers_a_finished_job_at_once(
    app_factory: Callable[..., Taskforge],
) -> None:
    sse = _load_example("sse_job_updates")
    tf = app_factory()

    @tf.task(name="sse.noop")
    async def noop() -> None:
        return None

    await noop.options(job_id="job-done").adelay()
    await Worker(tf.settings, tf.registry, burst=True).run()
    events = RedisClient(tf.settings)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            port = await tg.start(sse.serve, sse.create_app(tf, events), "127.0.0.1", 0)
            found = await anyio.to_thread.run_sync(
                _read_stream, port, "/jobs/job-done/events", threading.Event()
            )
            missing = await anyio.to_thread.run_sync(_read_stream, port, "/nope", threading.Event())
            tg.cancel_scope.cancel()
    await events.aclose()

    data = [json.loads(line[6:]) for line in found[2] if line.startswith("data: ")]
    assert [d["status"] for d in data] == ["succeeded"]
    assert missing[0] == 404
