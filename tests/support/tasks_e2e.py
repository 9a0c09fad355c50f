"""Tasks for real ``taskforge worker`` subprocesses:
``taskforge worker tests.support.tasks_e2e:app``.

The worker reads ``REDIS_URL`` and ``TASKFORGE_PREFIX`` from its environment; the test process
points the same ``app`` at the same Redis and prefix with ``app.configure(...)``. Tasks report
what they do in Redis lists (``<prefix>:e2e:<name>``) so a test can block on them (BLPOP) instead
of sleeping.
"""

from __future__ import annotations

import time

import anyio

from taskforge import Taskforge, current_job
from taskforge.driver.connection import sync_client

app = Taskforge()


def log_key(name: str) -> str:
    """The Redis list a task reports into (under the app's prefix)."""
    return f"{app.settings.prefix}:e2e:{name}"


def report(name: str, value: str) -> None:
    """Append ``value`` to the report list ``name``."""
    client = sync_client(app.settings)
    try:
        client.rpush(log_key(name), value)
    finally:
        client.close()


@app.task(name="e2e.record")
def record(label: str) -> str:
    """Note the order in which jobs run."""
    report("order", label)
    return label


@app.task(name="e2e.block")
async def block(seconds: float = 60.0) -> str:
    """Say it started, then run (async) for a long time."""
    report("started", current_job().job.id)
    await anyio.sleep(seconds)
    return "finished"


@app.task(name="e2e.block_sync")
def block_sync(seconds: float = 60.0) -> str:
    """Say it started, then run (in a worker thread) for a long time."""
    report("started", current_job().job.id)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)
    return "finished"


@app.task(name="e2e.die_once")
async def die_once() -> str:
    """Hang on its first delivery (the test kills that worker); succeed on a later one."""
    ctx = current_job()
    if ctx.token == "1":
        report("started", ctx.job.id)
        await anyio.sleep(60)
    return f"recovered on delivery {ctx.token}"
