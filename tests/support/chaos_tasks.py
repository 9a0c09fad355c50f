"""Tasks the chaos runner's worker processes run:
``taskforge worker tests.support.chaos_tasks:app``.

Every run of ``chaos.work`` appends one line to the ledger named by ``CHAOS_LEDGER``, a file
outside Redis, and fsyncs it before returning:
``job_id attempt delivery pid start end`` (times in epoch seconds). The checker compares the
ledger with what was enqueued: an id missing from it is a lost job, an id on two lines ran twice.
"""

from __future__ import annotations

import os
import threading
import time

from taskforge import Taskforge, current_job

app = Taskforge()

_ledger_lock = threading.Lock()
_ledger_fd: int | None = None


def _ledger() -> int:
    global _ledger_fd
    with _ledger_lock:
        if _ledger_fd is None:
            _ledger_fd = os.open(
                os.environ["CHAOS_LEDGER"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644
            )
        return _ledger_fd


def record_run(started: float) -> None:
    """Append this run to the ledger; fsync'd, so a SIGKILL right after cannot take it back."""
    ctx = current_job()
    line = f"{ctx.job.id} {ctx.attempt} {ctx.token} {os.getpid()} {started:.3f} {time.time():.3f}\n"
    fd = _ledger()
    os.write(fd, line.encode())  # O_APPEND: one short write is one whole line
    if os.environ.get("CHAOS_FSYNC", "1") == "1":
        os.fsync(fd)


@app.task(name="chaos.work", max_retries=0)
def work(ms: float = 0.0, cpu: bool = False, blob: str = "") -> None:
    """Sleep (or, with ``cpu``, spin holding the GIL) for ``ms`` milliseconds, then record.

    ``blob`` is ballast for the maxmemory scenario.
    """
    started = time.time()
    end = time.monotonic() + ms / 1000
    if cpu:
        x = 0
        while time.monotonic() < end:
            x += sum(range(200))
    elif ms > 0:
        time.sleep(ms / 1000)
    record_run(started)


@app.task(name="chaos.awork", max_retries=0)
async def awork() -> None:
    """The cheapest async job: record and return (the 100k-job RSS run)."""
    record_run(time.time())


@app.task(name="chaos.poison", max_retries=0)
def poison() -> None:
    """Kill the worker process under the job, as a segfaulting C extension would."""
    os._exit(13)


@app.task(name="chaos.step", max_retries=0)
def step(value: int, ms: float = 0.0) -> int:
    """A workflow step (tests/support/chaos_workflows.py): sleep ``ms``, record, return value+1."""
    started = time.time()
    if ms > 0:
        time.sleep(ms / 1000)
    record_run(started)
    return value + 1


@app.task(name="chaos.gather", max_retries=0)
def gather(values: list[int]) -> int:
    """A chord's callback: record (so a second run shows in the ledger) and sum."""
    record_run(time.time())
    return sum(values)
