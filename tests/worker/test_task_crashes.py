"""Whatever a task does, the worker survives and the job gets an outcome (issue 12, defects 3, 4).

Each test runs a hostile task beside well-behaved neighbours in one burst worker on a real Redis:
the worker must return normally, the neighbours succeed, and nothing is left in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from taskforge import Retry, Taskforge, Worker
from taskforge.protocol.keys import QueueKeys
from taskforge.worker import WorkerStats

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself fails")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ fails too")


class Custom(BaseException):
    """A BaseException of the task's own."""


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


def retry_nan() -> None:
    raise Retry(countdown_s=float("nan"))


def retry_inf() -> None:
    raise Retry(countdown_s=float("inf"))


def deep_result() -> Any:
    return nested(3000)


def bad_str() -> None:
    raise BadStr()


def keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def system_exit() -> None:
    raise SystemExit(3)


def generator_exit() -> None:
    raise GeneratorExit


def custom_base_exception() -> None:
    raise Custom("the task's own BaseException")


# Recorded type names are qualified outside builtins and taskforge (issue 14, point 2); a Retry
# with a countdown it cannot schedule is refused where it is built, in the task (point 1).
HOSTILE: dict[str, tuple[Callable[[], Any], str]] = {
    "retry_nan": (retry_nan, "ConfigurationError"),
    "retry_inf": (retry_inf, "ConfigurationError"),
    "deep_result": (deep_result, "SerializationError"),
    "bad_str": (bad_str, f"{__name__}.BadStr"),
    "keyboard_interrupt": (keyboard_interrupt, "KeyboardInterrupt"),
    "system_exit": (system_exit, "SystemExit"),
    "generator_exit": (generator_exit, "GeneratorExit"),
    "custom_base_exception": (custom_base_exception, f"{__name__}.Custom"),
}


async def drain(app: Taskforge, *, concurrency: int = 4, limit_s: float = 30) -> WorkerStats:
    worker = Worker(app.settings, app.registry, concurrency=concurrency, burst=True, block_s=0.5)
    with anyio.fail_after(limit_s):
        return await worker.run()


def register(app: Taskforge, name: str, kind: str) -> Any:
    body, _ = HOSTILE[name]
    options: dict[str, Any] = {"name": f"hostile.{name}", "max_retries": 1, "retry_backoff": 0.05}
    if kind == "sync":
        return app.task(**options)(body)

    async def run_async() -> Any:
        await anyio.sleep(0)
        return body()

    return app.task(**options)(run_async)


@pytest.mark.parametrize("kind", ["async", "sync"])
@pytest.mark.parametrize("name", list(HOSTILE))
async def test_a_hostile_task_gets_an_outcome_and_the_worker_and_its_neighbours_survive(
    app_factory: AppFactory, name: str, kind: str
) -> None:
    app = app_factory()
    hostile = register(app, name, kind)
    done: list[int] = []
    gate = threading.Event()

    @app.task(name="hostile.neighbour")
    def neighbour(n: int) -> None:
        gate.wait(5)  # running beside the hostile job when it strikes
        done.append(n)

    job_id = hostile.delay().id
    for n in range(3):
        neighbour.delay(n)
    threading.Timer(0.3, gate.set).start()

    await drain(app)

    rec = app.client.record("default", job_id)
    assert rec.status == "dead"
    assert rec.error_type == HOSTILE[name][1]
    assert rec.error
    assert sorted(done) == [0, 1, 2]
    r = redis.Redis.from_url(app.settings.redis_url)
    assert r.zcard(QueueKeys(app.settings.prefix, "default").inflight) == 0


async def test_a_retry_with_a_nan_countdown_waits_the_backoff_instead(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    runs: list[int] = []

    @app.task(name="hostile.nan_once", max_retries=2, retry_backoff=0.05)
    def nan_once() -> str:
        runs.append(1)
        if len(runs) == 1:
            raise Retry(countdown_s=float("nan"))
        return "ok"

    handle = nan_once.delay()

    stats = await drain(app)

    assert len(runs) == 2
    assert stats.retried == 1
    assert app.client.record("default", handle.id).result == "ok"


async def test_an_escaped_cancelled_error_is_a_failed_attempt_under_the_retry_policy(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()
    runs: list[int] = []

    @app.task(name="hostile.escaped_cancel", max_retries=1, retry_backoff=0.05)
    async def escaped() -> None:
        runs.append(1)
        inner = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        await inner  # the inner task's CancelledError escapes the task

    handle = escaped.delay()

    with caplog.at_level(logging.WARNING, logger="taskforge"):
        stats = await drain(app)

    assert len(runs) == 2  # max_retries=1: the first run and one retry, not max_deliveries
    rec = app.client.record("default", handle.id)
    assert rec.status == "dead"
    assert rec.error_type == "asyncio.exceptions.CancelledError"
    assert rec.deliveries == 2
    assert stats.retried == 1 and stats.dead == 1
    assert "CancelledError" in caplog.text and handle.id in caplog.text


async def test_a_cancel_request_is_still_a_cancellation_not_a_failure(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    started = threading.Event()

    @app.task(name="hostile.wait_for_cancel", max_retries=3)
    async def wait_for_cancel() -> None:
        started.set()
        await anyio.sleep(30)

    handle = wait_for_cancel.delay()
    worker = Worker(app.settings, app.registry, concurrency=1, burst=True, block_s=0.5)

    async def cancel_when_started() -> None:
        await anyio.to_thread.run_sync(started.wait, 10)
        app.client.cancel("default", handle.id)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_when_started)
            await worker.run()

    assert app.client.record("default", handle.id).status == "cancelled"
    assert worker.stats.retried == 0
