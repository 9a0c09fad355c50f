"""Tasks of ``pool_bench.py``; the pool's children import this module (``pool_tasks:app``)."""

from __future__ import annotations

import time

from taskforge import Taskforge

app = Taskforge()


@app.task(name="bench.spin")
def spin(loops: int) -> int:
    """Pure-Python CPU work: a fixed number of loop turns (``pool_bench`` sizes it to 50 ms)."""
    total = 0
    for i in range(loops):
        total += i % 7
    return total


def loops_for_ms(ms: float) -> int:
    """How many :func:`spin` turns take ``ms`` milliseconds on one core here (best of 5)."""
    probe = 200_000
    best_s = min(_timed(probe) for _ in range(5))
    return int(probe * ms / 1000 / best_s)


def _timed(loops: int) -> float:
    started = time.perf_counter()
    spin(loops)
    return time.perf_counter() - started


@app.task(name="bench.noop")
def noop() -> None:
    """Nothing: the cost of the machinery around a sync job."""
