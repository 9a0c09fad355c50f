"""Middleware hooks that raise a BaseException (``sys.exit()``, ``KeyboardInterrupt``): the
same rules as for an ``Exception`` (before_run fails the attempt, after_run is logged), never a
worker crash that leaves its jobs active until their leases lapse."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from taskforge import JobStatus, Middleware
from taskforge.worker import Worker
from tests.test_middleware import AppFactory

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def exiting(hook: str) -> Middleware:
    def leave(self: Middleware, *args: Any) -> None:
        raise SystemExit(5)

    middleware: Middleware = type("Exits", (Middleware,), {hook: leave})()
    return middleware


async def drained(app: Any) -> Any:
    worker = Worker(app.settings, app.registry, burst=True, block_s=0.5, middleware=app.middleware)
    with anyio.fail_after(20):
        return await worker.run()


async def test_before_run_raising_system_exit_fails_the_attempt(app_factory: AppFactory) -> None:
    app = app_factory()
    app.add_middleware(exiting("before_run"))

    @app.task(name="mwx.ok", max_retries=1, retry_backoff=0)
    def ok() -> int:
        return 1

    handles = [ok.delay(), ok.delay()]
    stats = await drained(app)

    assert stats.dead == 2
    for handle in handles:
        rec = app.client.record("default", handle.id)
        assert (rec.status, rec.attempts, rec.error_type) == (JobStatus.DEAD, 2, "SystemExit")


async def test_after_run_raising_system_exit_is_logged_and_the_outcome_stands(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()
    app.add_middleware(exiting("after_run"))

    @app.task(name="mwx.ok", max_retries=1, retry_backoff=0)
    def ok() -> int:
        return 1

    handles = [ok.delay(), ok.delay()]
    stats = await drained(app)

    assert stats.succeeded == 2
    assert [await h.aresult(timeout=5) for h in handles] == [1, 1]
    assert "failed; the job's outcome stands" in caplog.text and "SystemExit: 5" in caplog.text
