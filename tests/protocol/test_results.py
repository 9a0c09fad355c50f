"""Results: waiting without polling, values, remote errors, timeouts, expiry."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import redis

from taskforge import JobFailedError, JobNotFoundError, ResultTimeoutError, Taskforge
from tests.support.timetasks import QUIET, wait_until

AppFactory = Callable[..., Taskforge]
WorkerProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def test_result_returns_the_value_from_a_worker_process(
    app_factory: AppFactory, worker_process: WorkerProcess
) -> None:
    app = app_factory()
    handle = app.submit([app.call("results.add", 2, 3)])[0]

    worker_process(*QUIET)

    assert handle.result(timeout=15) == 5


def test_remote_error_carries_its_type_and_message(
    app_factory: AppFactory, worker_process: WorkerProcess
) -> None:
    app = app_factory()
    call = app.call("results.fail", 7)
    handle = app.submit([replace(call, options=replace(call.options, max_retries=0))])[0]

    worker_process(*QUIET)

    with pytest.raises(JobFailedError) as failed:
        handle.result(timeout=15)
    assert failed.value.status == "dead"
    assert failed.value.error_type == "ValueError"
    assert failed.value.message == "bad input 7"
    assert "ValueError: bad input 7" in str(failed.value)


def test_result_times_out_without_busy_polling(app_factory: AppFactory, r: redis.Redis) -> None:
    app = app_factory()
    handle = app.submit([app.call("results.add", 1, 1)])[0]  # no worker: it never finishes
    # Warm up: the first wait loads the watch script (NOSCRIPT, SCRIPT LOAD) on a fresh pooled
    # connection; that one-off cost is not the waiting this test counts.
    with pytest.raises(ResultTimeoutError):
        handle.result(timeout=0.1)
    before = int(r.info("stats")["total_commands_processed"])
    started = time.monotonic()

    with pytest.raises(ResultTimeoutError):
        handle.result(timeout=1.5)

    waited_s = time.monotonic() - started
    commands = int(r.info("stats")["total_commands_processed"]) - before
    assert 1.4 <= waited_s < 3
    assert commands <= 8, f"{commands} commands in {waited_s:.1f}s: that is polling"


@pytest.mark.anyio
async def test_aresult_waits_for_the_value(
    app_factory: AppFactory, worker_process: WorkerProcess
) -> None:
    app = app_factory()
    (handle,) = await app.asubmit([app.call("results.add", 20, 22)])

    worker_process(*QUIET)

    assert await handle.aresult(timeout=15) == 42


def test_results_expire_after_the_configured_ttl(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    handle = app.submit([app.call("results.add", 1, 2)])[0]

    worker_process(*QUIET, env={"TASKFORGE_RESULT_TTL": "1"})

    assert handle.result(timeout=15) == 3
    assert 0 < r.pttl(f"{prefix}:{{default}}:j:{handle.id}") <= 1000
    wait_until(lambda: not r.exists(f"{prefix}:{{default}}:j:{handle.id}"), timeout_s=5)
    with pytest.raises(JobNotFoundError):
        handle.info()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
