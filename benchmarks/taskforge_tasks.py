"""taskforge's side of the benchmark: no-op tasks and the runner workloads (see ``runner.py``).

Run by ``bench.py`` as ``python benchmarks/taskforge_tasks.py <workload> ...``. The worker is an
in-process :class:`~taskforge.worker.Worker` in this (its own) process, as ``taskforge worker``
builds it, with logging at ERROR (the CLI logs one INFO line per job).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import redis
import redis.asyncio
from runner import (
    BODY_S,
    STAMP_SUFFIX,
    burn_cpu,
    count_round_trips,
    counter_key,
    cpu_s,
    drain_result,
    emit,
    enqueue_result,
    measure_pickup,
    parse,
    prefix,
    redis_url,
)

from taskforge import Settings, Taskforge
from taskforge.worker import Worker

app = Taskforge(Settings.from_env(redis_url=redis_url(), prefix=prefix()))
_stamps: dict[str, Any] = {}


@app.task(name="bench.noop_async", max_retries=0)
async def noop_async() -> None:
    """Does nothing, on the worker's event loop."""


@app.task(name="bench.noop_sync", max_retries=0)
def noop_sync() -> None:
    """Does nothing, in a worker thread."""


@app.task(name="bench.stamp", max_retries=0)
async def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    started = time.monotonic()
    await _aclient().rpush(prefix() + STAMP_SUFFIX, repr(started))


def _aclient() -> redis.asyncio.Redis:
    client = _stamps.get("client")
    if client is None:
        client = _stamps["client"] = redis.asyncio.Redis.from_url(redis_url())
    return client  # type: ignore[no-any-return]


_sync_client = redis.Redis.from_url(redis_url())


@app.task(name="bench.incr_async", max_retries=0)
async def incr_async() -> None:
    """One Redis INCR (asyncio client)."""
    await _aclient().incr(counter_key())


@app.task(name="bench.incr_sync", max_retries=0)
def incr_sync() -> None:
    """One Redis INCR (blocking client, thread-safe pool)."""
    _sync_client.incr(counter_key())


@app.task(name="bench.sleep_async", max_retries=0)
async def sleep_async() -> None:
    """Waits 1 ms on the event loop."""
    await anyio.sleep(BODY_S)


@app.task(name="bench.sleep_sync", max_retries=0)
def sleep_sync() -> None:
    """Waits 1 ms in a worker thread."""
    time.sleep(BODY_S)


@app.task(name="bench.cpu_async", max_retries=0)
async def cpu_async() -> None:
    """Burns 1 ms of CPU on the event loop."""
    burn_cpu()


@app.task(name="bench.cpu_sync", max_retries=0)
def cpu_sync() -> None:
    """Burns 1 ms of CPU in a worker thread."""
    burn_cpu()


TASKS = {"async": noop_async, "sync": noop_sync}
BODY_TASKS = {
    ("noop", "async"): noop_async,
    ("noop", "sync"): noop_sync,
    ("incr", "async"): incr_async,
    ("incr", "sync"): incr_sync,
    ("sleep", "async"): sleep_async,
    ("sleep", "sync"): sleep_sync,
    ("cpu", "async"): cpu_async,
    ("cpu", "sync"): cpu_sync,
}
BULK_CHUNK = 1000


def enqueue(mode: str, n: int, kind: str, body: str = "noop") -> dict[str, Any]:
    """Enqueue ``n`` jobs one call at a time (sync/async) or in chunks (bulk)."""
    task = BODY_TASKS[body, kind]
    if mode == "async":
        return anyio.run(_aenqueue, n, kind)
    task.delay()  # connect, load the script, announce the queue: not part of the figure
    started = time.perf_counter()
    if mode == "sync":
        gaps = []
        for _ in range(n):
            sent = time.perf_counter()
            task.delay()
            gaps.append(time.perf_counter() - sent)
        return enqueue_result(gaps, time.perf_counter() - started)
    for done in range(0, n, BULK_CHUNK):
        app.enqueue_many([task.s() for _ in range(min(BULK_CHUNK, n - done))])
    return _rate(n, time.perf_counter() - started)


async def _aenqueue(n: int, kind: str) -> dict[str, Any]:
    task = TASKS[kind]
    await task.adelay()
    started = time.perf_counter()
    gaps = []
    for _ in range(n):
        sent = time.perf_counter()
        await task.adelay()
        gaps.append(time.perf_counter() - sent)
    return enqueue_result(gaps, time.perf_counter() - started)


def _rate(n: int, seconds: float) -> dict[str, Any]:
    # The warm-up job counts as queued work for a following drain.
    return {"jobs": n, "queued": n + 1, "seconds": seconds, "jobs_per_s": n / seconds}


def drain(n: int, concurrency: int, round_trips: bool, uvloop: bool) -> dict[str, Any]:
    """Run the queued jobs in burst mode; timed from the worker's start to its return."""
    worker = Worker(app.settings, app.registry, concurrency=concurrency, burst=True)
    reader = count_round_trips() if round_trips else None
    started, cpu_started = time.perf_counter(), cpu_s()
    stats = anyio.run(worker.run, backend_options={"use_uvloop": uvloop})
    seconds = time.perf_counter() - started
    return drain_result(
        stats.processed, seconds, cpu_started, round_trips=reader() if reader else None
    )


def serve(concurrency: int, uvloop: bool) -> None:
    """An idle worker for the latency workload; runs until the driver terminates it."""
    worker = Worker(app.settings, app.registry, concurrency=concurrency)
    anyio.run(worker.run, backend_options={"use_uvloop": uvloop})


def latency(samples: int, warmup: int = 20) -> dict[str, Any]:
    """Enqueue one job at a time on an idle worker; gap from ``.delay()`` to the task's start."""
    client = redis.Redis.from_url(redis_url())
    return measure_pickup(stamp.delay, client.blpop, samples, warmup)


def main() -> None:
    """Run one workload and print its RESULT line."""
    # Warnings about the private server (no persistence) are expected; job lines are noise.
    logging.basicConfig(level=logging.ERROR)
    args = parse()
    if args.workload == "enqueue":
        emit(enqueue(args.mode, args.n, args.kind))
    elif args.workload == "fill":
        emit(enqueue("bulk", args.n - 1, args.kind, args.body))
    elif args.workload == "kick":
        stamp.delay()
        emit({"queued": 1})
    elif args.workload == "drain":
        emit(drain(args.n, args.concurrency, args.count_round_trips, args.uvloop))
    elif args.workload == "serve":
        serve(args.concurrency, args.uvloop)
    else:
        emit(latency(args.samples))


if __name__ == "__main__":
    main()
