"""Hostile tasks for process-pool workers: ``taskforge worker tests.hostile_pool_tasks:app``.

Each misbehaves as user code can in a child process; the worker must keep its guarantees.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from taskforge import Taskforge, current_job

app = Taskforge()


class Unpicklable:
    """A value pickle refuses (holds a lock)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()


class LoadBomb:
    """Pickles fine in the child, fails to unpickle in the worker."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_explode, ())


def _explode() -> None:
    raise RuntimeError("cannot be rebuilt")


class LockedError(Exception):
    """An exception that cannot be pickled (holds a lock)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()


class ReduceRaises(Exception):
    """An exception whose __reduce__ raises."""

    def __reduce__(self) -> Any:
        raise RuntimeError("no reduce for you")


class StrRaises(Exception):
    """An exception whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")


@app.task(name="h.pid")
def pid() -> int:
    return os.getpid()


@app.task(name="h.unpicklable_value", max_retries=0)
def unpicklable_value() -> Any:
    return Unpicklable()


@app.task(name="h.load_bomb", max_retries=0)
def load_bomb() -> Any:
    return LoadBomb()


@app.task(name="h.locked_error", max_retries=0)
def locked_error() -> None:
    raise LockedError("holds a lock")


@app.task(name="h.reduce_raises", max_retries=0)
def reduce_raises() -> None:
    raise ReduceRaises("bad reduce")


@app.task(name="h.str_raises", max_retries=0)
def str_raises() -> None:
    raise StrRaises()


@app.task(name="h.sys_exit", max_retries=0)
def sys_exit() -> None:
    sys.exit(3)


@app.task(name="h.os_exit", max_retries=1, retry_backoff=0)
def os_exit() -> int:
    if current_job().attempt == 1:
        os._exit(0)
    return os.getpid()


@app.task(name="h.keyboard", max_retries=0)
def keyboard() -> None:
    raise KeyboardInterrupt


@app.task(name="h.own_handlers", max_retries=0)
def own_handlers() -> int:
    """Install handlers of its own for SIGALRM, SIGUSR1 and SIGTERM, and return."""
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return os.getpid()


@app.task(name="h.sleep_soft", soft_timeout=0.3, timeout=20, max_retries=0)
def sleep_soft() -> str:
    """Sleep past its soft limit; the limit must raise (returns what happened)."""
    from taskforge import SoftTimeoutExceeded

    try:
        time.sleep(3)
    except SoftTimeoutExceeded:
        return "soft"
    return "slept"


@app.task(name="h.forks", max_retries=0)
def forks() -> int:
    """Fork and let the grandchild return from the task too, as a careless task would."""
    os.fork()
    return os.getpid()


@app.task(name="h.echo_len", max_retries=0)
def echo_len(blob: str) -> int:
    return len(blob)


@app.task(name="h.big_result", max_retries=0)
def big_result(n: int) -> str:
    return "x" * n


@app.task(name="h.alloc", max_retries=1, retry_backoff=0)
def alloc(mib: int) -> int:
    data = b"x" * (mib * 1024 * 1024)
    return len(data) + os.getpid() * 0


@app.task(name="h.slow", max_retries=3, retry_backoff=0)
def slow(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@app.task(name="h.one_shot", max_retries=0)
def one_shot(seconds: float) -> int:
    """Say it started (into the ``started`` list), then work ``seconds``; no retries."""
    from taskforge.driver.connection import sync_client

    client = sync_client(app.settings)
    try:
        client.rpush(f"{app.settings.prefix}:hostile:started", current_job().job.id)
    finally:
        client.close()
    time.sleep(seconds)
    return os.getpid()
