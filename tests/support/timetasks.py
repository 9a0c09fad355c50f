"""Tasks and helpers for the time-and-control tests (cron, cancel, limits, progress).

Real worker processes load this module as ``tests.support.timetasks:app``; the app reads
``REDIS_URL`` and ``TASKFORGE_PREFIX`` from the environment the ``worker_process`` fixture sets.
Tasks write what they did to ledger keys under the test's prefix, which the tests read back.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import anyio
import redis

from taskforge import JobCancelledError, JobInterrupted, Taskforge, current_job

T = TypeVar("T")

app = Taskforge()
#: Worker arguments for this module. Workers log at WARNING: the ``worker_process`` fixture pipes
#: their output and nobody reads it, so per-job INFO lines would fill the pipe and stall them.
QUIET = ("tests.support.timetasks:app", "--log-level", "WARNING")
_client: redis.Redis | None = None


def ledger() -> redis.Redis:
    """A plain client on the test Redis (tasks and tests write and read ledgers with it)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _client


def key(name: str, prefix: str | None = None) -> str:
    """A ledger key under the test's prefix."""
    return f"{prefix or os.environ['TASKFORGE_PREFIX']}:ledger:{name}"


def wait_until(predicate: Callable[[], T], timeout_s: float = 10.0, every_s: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        time.sleep(every_s)


@app.task(name="cron.tick", queue="cron", cron="* * * * * *", max_retries=0)
def tick() -> None:
    """Runs every second; records its job id (cron:cron.tick:<tick ms>)."""
    ledger().rpush(key("ticks"), current_job().job.id)


@app.task(name="sched.mark", max_retries=0)
async def mark() -> None:
    """Records that it ran, and when its run began (ms)."""
    job = current_job().job
    ledger().rpush(key("runs"), f"{job.id} {int(time.time() * 1000)}")


@app.task(name="limits.email", concurrency=2, max_retries=0)
async def email(n: int) -> int:
    """At most two at once cluster-wide; records how many ran at once when it began."""
    r = ledger()
    now_running = r.incr(key("running"))
    r.rpush(key("concurrent"), now_running)
    try:
        await anyio.sleep(0.15)
    finally:
        r.decr(key("running"))
    return n


@app.task(name="limits.rated", rate_limit="4/s", max_retries=0)
def rated(n: int) -> int:
    """At most four starts per second cluster-wide; records when it began (ms)."""
    ledger().rpush(key("rated"), int(time.time() * 1000))
    return n


@app.task(name="cancel.sleepy", max_retries=3)
async def sleepy() -> None:
    """Runs until cancelled."""
    ledger().rpush(key("started"), current_job().job.id)
    await anyio.sleep(60)


@app.task(name="cancel.busy", max_retries=3)
def busy() -> None:
    """A sync loop that honours the cooperative cancel flag."""
    ledger().rpush(key("started"), current_job().job.id)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if current_job().cancel_requested:
                ledger().rpush(key("stopped"), "flag")
                return
            time.sleep(0.01)
    except (JobCancelledError, JobInterrupted):
        ledger().rpush(key("stopped"), "interrupted")
        raise


@app.task(name="progress.steps", max_retries=0)
def steps() -> str:
    """Reports progress, then waits until the test lets it finish."""
    current_job().set_progress(0.4, "step 2")
    r = ledger()
    r.rpush(key("progressed"), "1")
    r.blpop([key("finish")], timeout=20)
    return "done"


@app.task(name="results.add", max_retries=0)
async def add(a: int, b: int) -> int:
    """Returns the sum."""
    return a + b


@app.task(name="results.fail", max_retries=0)
def fail(n: int) -> None:
    """Always raises ValueError."""
    raise ValueError(f"bad input {n}")


@app.task(name="sched.busy", max_retries=0)
async def busy_async(seconds: float) -> None:
    """Holds a worker slot for a while (load for the schedule tests)."""
    await anyio.sleep(seconds)
