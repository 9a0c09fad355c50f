"""Tasks for process-pool workers: ``taskforge worker tests.support.pool_tasks:app --pool process``.

Like ``tests.support.tasks_e2e``, the worker reads ``REDIS_URL``/``TASKFORGE_PREFIX`` from its
environment and tasks report into Redis lists a test can block on.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime

from taskforge import (
    JobCancelledError,
    JobInterrupted,
    Retry,
    SoftTimeoutExceeded,
    Taskforge,
    current_job,
)
from taskforge.driver.connection import sync_client

app = Taskforge()
_hoard: list[bytes] = []  # what pool.hog keeps alive in its child


def log_key(name: str) -> str:
    """The Redis list a task reports into (under the app's prefix)."""
    return f"{app.settings.prefix}:pool:{name}"


def report(name: str, value: str) -> None:
    """Append ``value`` to the report list ``name``."""
    client = sync_client(app.settings)
    try:
        client.rpush(log_key(name), value)
    finally:
        client.close()


def wait_for_go(timeout_s: float = 30) -> None:
    """Wait until the test pushes to the ``go`` list (polled: a long BLPOP would outlast the
    client's socket timeout)."""
    client = sync_client(app.settings)
    try:
        deadline = time.monotonic() + timeout_s
        while client.lpop(log_key("go")) is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.close()


@app.task(name="pool.pid")
def pid() -> int:
    """The process the task ran in."""
    return os.getpid()


@app.task(name="pool.apid")
async def apid() -> int:
    """An async task: runs on the worker's loop, so this is the worker's pid."""
    return os.getpid()


@app.task(name="pool.body_incr")
def body_incr() -> tuple[int, int]:
    """INCR through the child's lent client: (this child's pid, the client's id)."""
    client = current_job().sync_redis
    client.incr(log_key("body_incr"))
    return os.getpid(), id(client)


@app.task(name="pool.spin")
def spin(ms: float = 50.0) -> int:
    """Burn CPU in pure Python for about ``ms`` milliseconds; returns the loop count."""
    end = time.perf_counter() + ms / 1000
    n = 0
    while time.perf_counter() < end:
        n += 1
    return n


@app.task(name="pool.die_once", max_retries=1, retry_backoff=0)
def die_once() -> int:
    """SIGKILL its own process on the first attempt (as the OOM killer would); then succeed."""
    if current_job().attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@app.task(name="pool.hang", max_retries=0, timeout=0.5)
def hang() -> None:
    """Run past its timeout; the SIGTERM raises JobInterrupted, so ``finally`` runs."""
    try:
        time.sleep(60)
    finally:
        report("cleaned", current_job().job.id)


@app.task(name="pool.stubborn", max_retries=0, timeout=0.3)
def stubborn() -> None:
    """Ignore SIGTERM (as C code stuck in a call would): only SIGKILL stops it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the pool's interrupt
    report("stubborn", str(os.getpid()))
    time.sleep(60)


@app.task(name="pool.fail", max_retries=0)
def fail(text: str) -> None:
    """Raise in the child; the record keeps the child's traceback."""
    raise ValueError(text)


@app.task(name="pool.hog")
def hog(mib: int) -> int:
    """Keep ``mib`` MiB alive in this child; returns its pid."""
    _hoard.append(b"x" * (mib * 1024 * 1024))  # written, so resident (calloc'd pages are not)
    return os.getpid()


@app.task(name="pool.sleepy")
def sleepy() -> None:
    """Say it started, then sleep for a minute (until cancelled)."""
    report("sleepy", str(os.getpid()))
    time.sleep(60)


@app.task(name="pool.typed")
def typed(when: datetime) -> str:
    """Returns the type its argument arrived as (a datetime, as on the thread path)."""
    return type(when).__name__


@app.task(name="pool.retry_later", max_retries=1, retry_on=(LookupError,))
def retry_later() -> str:
    """A deliberate Retry with its countdown: a retry even under a retry_on filter."""
    if current_job().attempt == 1:
        raise Retry(countdown_s=0.2, reason="not yet")
    return "second"


@app.task(name="pool.soft", soft_timeout=0.3, timeout=30, max_retries=0)
def soft() -> str:
    """Catch the soft limit in the child and finish early with what it has."""
    try:
        time.sleep(30)
    except SoftTimeoutExceeded as exc:
        report("soft", str(exc))
        return "wrapped up"
    return "slept"


@app.task(name="pool.soft_ignored", soft_timeout=0.2, timeout=0.8, max_retries=0)
def soft_ignored() -> None:
    """Swallow the soft limit, then ignore SIGTERM: the hard timeout's SIGKILL ends it."""
    try:
        time.sleep(30)
    except SoftTimeoutExceeded:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the pool's interrupt
        report("soft_ignored", str(os.getpid()))
    time.sleep(60)


@app.task(name="pool.progress")
def progress() -> int:
    """Report progress, wait until the test has seen it in Redis, report more, return."""
    job = current_job()
    job.set_progress(0.25, "loading")
    job.set_progress(0.5, "halfway")
    report("progress", str(os.getpid()))
    wait_for_go()
    job.set_progress(1.0, "done")
    return os.getpid()


@app.task(name="pool.cancellable")
def cancellable() -> None:
    """Sleep until cancelled; on the interrupt, say what ``raise_if_cancelled`` did."""
    report("cancellable", str(os.getpid()))
    try:
        time.sleep(60)
    except JobInterrupted:
        try:
            current_job().raise_if_cancelled()
            report("cancel_seen", "not cancelled")
        except JobCancelledError as exc:
            report("cancel_seen", f"{current_job().cancel_requested}: {exc}")
        raise


@app.task(name="pool.progress_flood")
def progress_flood(n: int) -> int:
    """Report progress ``n`` times in a tight loop; the last report is the one kept."""
    job = current_job()
    for i in range(1, n + 1):
        job.set_progress(i / n, f"step {i}")
    wait_for_go()  # still active while the test reads the record
    return n
