"""Results and time per task and per call: ignore_result, result_ttl, expires, soft_timeout.
On memory:// and on a real Redis."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest

from taskforge import (
    ConfigurationError,
    JobFailedError,
    JobStatus,
    Settings,
    SoftTimeoutExceeded,
    Taskforge,
    Worker,
)
from taskforge.driver.requests import Command, Op
from taskforge.protocol.brokers import AsyncBroker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(any_url: str) -> Iterator[Taskforge]:
    app = Taskforge(Settings(redis_url=any_url, prefix=f"tro-{uuid.uuid4().hex[:8]}"))
    yield app
    app.client.close()


async def drain(app: Taskforge) -> None:
    worker = Worker(app.settings, app.registry, concurrency=2, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        await worker.run()


def ttl_of(app: Taskforge, job_id: str) -> int:
    def op() -> Op[int]:
        return int((yield Command(("TTL", app.client.broker.ops.keys("default").job(job_id)))))

    return app.client.broker.run(op())


# ------------------------------------------------------------------ ignore_result, result_ttl


async def test_ignore_result_stores_nothing_even_an_uncarried_value(app: Taskforge) -> None:
    @app.task(name="ro.ignored", ignore_result=True)
    def ignored() -> Any:
        return {"big": "x" * 1000, "set": {1, 2}}

    handle = ignored.delay()

    await drain(app)

    info = handle.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.result is None
    assert handle.result(timeout=5) is None


async def test_result_ttl_per_task_replaces_the_settings_ttl(app: Taskforge) -> None:
    @app.task(name="ro.short", result_ttl=30)
    def short() -> int:
        return 1

    @app.task(name="ro.default")
    def default() -> int:
        return 2

    s, d = short.delay(), default.delay()

    await drain(app)

    assert 0 < ttl_of(app, s.id) <= 30
    assert ttl_of(app, d.id) > 30_000  # the settings' 86400 s
    assert (s.result(timeout=5), d.result(timeout=5)) == (1, 2)


# ------------------------------------------------------------------ expires


async def test_a_job_not_started_by_its_expiry_is_cancelled_and_published(
    app: Taskforge,
) -> None:
    ran: list[str] = []

    @app.task(name="ro.report")
    def report(kind: str) -> None:
        ran.append(kind)

    listener = AsyncBroker(app.settings)
    subscribed = anyio.Event()
    events: list[dict[str, Any]] = []

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            events.append(json.loads(data))
            if {"cancelled", "succeeded"} <= {e["status"] for e in events}:
                return

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await subscribed.wait()
            # Due in 0.6 s, expired after 0.1 s: when a worker gets it, it is too late.
            late = report.options(expires=timedelta(seconds=0.1)).schedule(0.6, "late")
            fresh = report.options(expires=60).delay("fresh")
            await drain(app)
    await listener.aclose()

    info = late.info()
    assert ran == ["fresh"]
    assert (info.status, info.error_type) == (JobStatus.CANCELLED, "Expired")
    assert (info.error or "").startswith("expired: not started by ")
    assert fresh.info().status is JobStatus.SUCCEEDED
    cancelled = [e for e in events if e["job_id"] == late.id and e["status"] == "cancelled"]
    assert cancelled and cancelled[0]["error"].startswith("Expired: expired: not started by")
    with pytest.raises(JobFailedError, match="cancelled"):
        late.result(timeout=1)


# ------------------------------------------------------------------ soft_timeout


async def test_an_async_task_catches_its_soft_timeout_and_wraps_up(app: Taskforge) -> None:
    @app.task(name="ro.soft_async", soft_timeout=0.2, timeout=20)
    async def crunch() -> str:
        try:
            await anyio.sleep(15)
        except SoftTimeoutExceeded as exc:
            return f"partial: {exc}"
        return "finished"

    handle = crunch.delay()

    await drain(app)

    assert handle.result(timeout=5) == "partial: soft time limit of 0.2s exceeded"


async def test_a_sync_task_catches_its_soft_timeout_as_an_exception(app: Taskforge) -> None:
    stop = threading.Event()

    @app.task(name="ro.soft_sync", soft_timeout=0.2, timeout=20)
    def spin() -> str:
        try:
            while not stop.is_set():
                pass
        except Exception as exc:
            return type(exc).__name__
        return "stopped"

    handle = spin.delay()

    try:
        await drain(app)
    finally:
        stop.set()

    assert handle.result(timeout=5) == "SoftTimeoutExceeded"


async def test_an_uncaught_soft_timeout_fails_the_attempt(app: Taskforge) -> None:
    @app.task(name="ro.soft_uncaught", soft_timeout=0.1, timeout=20, max_retries=0)
    async def dawdle() -> None:
        await anyio.sleep(15)

    handle = dawdle.delay()

    await drain(app)

    info = handle.info()
    assert (info.status, info.error_type) == (JobStatus.DEAD, "SoftTimeoutExceeded")


async def test_the_hard_timeout_still_stops_a_task_that_ignores_the_soft_one(
    app: Taskforge,
) -> None:
    @app.task(name="ro.stubborn", soft_timeout=0.1, timeout=0.4, max_retries=0)
    async def stubborn() -> None:
        try:
            await anyio.sleep(15)
        except SoftTimeoutExceeded:
            await anyio.sleep(15)

    handle = stubborn.delay()

    await drain(app)

    assert handle.info().error_type == "JobTimeoutError"


# ------------------------------------------------------------------ bad options


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"soft_timeout": 10, "timeout": 5}, "must be shorter than timeout"),
        ({"soft_timeout": 0}, "soft_timeout must be a finite number"),
        ({"result_ttl": 0}, "result_ttl must be a whole number of seconds >= 1"),
        ({"result_ttl": 1.5}, "result_ttl must be a whole number of seconds >= 1"),
    ],
)
def test_bad_result_options_are_refused_at_decoration(options: dict[str, Any], says: str) -> None:
    app = Taskforge(Settings(redis_url="memory://bad-result-options"))

    with pytest.raises(ConfigurationError, match=says):
        app.task(name="ro.bad", **options)(lambda: None)


@pytest.mark.parametrize(
    ("expires", "says"),
    [(-1, "expires must be seconds > 0"), (datetime(2030, 1, 1), "naive datetime")],
)
def test_bad_expires_is_refused_at_options(expires: Any, says: str) -> None:
    app = Taskforge(Settings(redis_url="memory://bad-expires"))

    @app.task(name="ro.exp")
    def exp() -> None: ...

    with pytest.raises(ConfigurationError, match=says):
        exp.options(expires=expires)
