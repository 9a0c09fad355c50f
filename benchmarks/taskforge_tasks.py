"""taskforge's side of the benchmark: no-op tasks and the runner workloads (see ``runner.py``).

Run by ``bench.py`` as ``python benchmarks/taskforge_tasks.py <workload> ...``. The worker is an
in-process :class:`~taskforge.worker.Worker` in this (its own) process, as ``taskforge worker``
builds it, with logging at ERROR (the CLI logs one INFO line per job).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import anyio
import redis
import redis.asyncio
from runner import (
    arun_body,
    astamp_now,
    atimed_calls,
    count_round_trips,
    cpu_s,
    drain_result,
    emit,
    measure_pickup,
    parse,
    prefix,
    redis_url,
    run_body,
    timed_calls,
    track,
)

from taskforge import Settings, Taskforge, current_job
from taskforge.worker import Worker

app = Taskforge(Settings.from_env(redis_url=redis_url(), prefix=prefix()))
_stamps: dict[str, Any] = {}


@app.task(name="bench.noop_async", max_retries=0)
async def noop_async() -> None:
    """Does nothing, on the worker's event loop."""
    await arun_body("noop", None)


@app.task(name="bench.noop_sync", max_retries=0)
def noop_sync() -> None:
    """Does nothing, in a worker thread."""
    run_body("noop", None)


@app.task(name="bench.stamp", max_retries=0)
async def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    await astamp_now(_aclient())


def _aclient() -> redis.asyncio.Redis:
    client = _stamps.get("client")
    if client is None:
        client = _stamps["client"] = redis.asyncio.Redis.from_url(redis_url())
    return client  # type: ignore[no-any-return]


_sync_client = redis.Redis.from_url(redis_url())


#: The INCR body's client: the worker's lent one (``current_job().redis``, auto-pipelined; the
#: way the README shows, as arq's body uses its ``ctx['redis']``), or with
#: ``BENCH_TF_INCR_CLIENT=own`` a ``redis.asyncio.Redis`` the task module made itself.
_INCR_OWN_CLIENT = os.environ.get("BENCH_TF_INCR_CLIENT", "lent") == "own"


@app.task(name="bench.incr_async", max_retries=0)
async def incr_async() -> None:
    """One Redis INCR (asyncio client: the worker's lent one unless BENCH_TF_INCR_CLIENT=own)."""
    await arun_body("incr", _aclient() if _INCR_OWN_CLIENT else current_job().redis)


@app.task(name="bench.incr_sync", max_retries=0)
def incr_sync() -> None:
    """One Redis INCR (blocking client, thread-safe pool)."""
    run_body("incr", _sync_client)


@app.task(name="bench.sleep_async", max_retries=0)
async def sleep_async() -> None:
    """Waits 1 ms on the event loop."""
    await arun_body("sleep", None)


@app.task(name="bench.sleep_sync", max_retries=0)
def sleep_sync() -> None:
    """Waits 1 ms in a worker thread."""
    run_body("sleep", None)


@app.task(name="bench.cpu_async", max_retries=0)
async def cpu_async() -> None:
    """Burns 1 ms of CPU on the event loop."""
    await arun_body("cpu", None)


@app.task(name="bench.cpu_sync", max_retries=0)
def cpu_sync() -> None:
    """Burns 1 ms of CPU in a worker thread."""
    run_body("cpu", None)


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


def queue_names(queues: int) -> list[str]:
    """The queues a ``--queues K`` run spreads its jobs over (0: the task's own, ``default``)."""
    return [f"q{i}" for i in range(queues)] if queues else ["default"]


def enqueue(mode: str, n: int, kind: str, body: str = "noop", queues: int = 0) -> dict[str, Any]:
    """Enqueue ``n`` jobs one call at a time (sync/async) or in chunks (bulk); bulk spreads them
    round-robin over ``queues`` queues (see :func:`queue_names`)."""
    task = BODY_TASKS[body, kind]
    if mode == "async":
        return anyio.run(_aenqueue, n, kind)
    if mode == "sync":  # the first call (connect, load the script) is not part of the figure
        return timed_calls(task.delay, n)
    task.delay()
    started = time.perf_counter()
    if queues:
        routed = [task.options(queue=q) for q in queue_names(queues)]
        for done in range(0, n, BULK_CHUNK):
            end = min(done + BULK_CHUNK, n)
            app.enqueue_many([routed[i % queues].s() for i in range(done, end)])
        return _rate(n, time.perf_counter() - started)
    for done in range(0, n, BULK_CHUNK):
        app.enqueue_many([task.s() for _ in range(min(BULK_CHUNK, n - done))])
    return _rate(n, time.perf_counter() - started)


async def _aenqueue(n: int, kind: str) -> dict[str, Any]:
    return await atimed_calls(TASKS[kind].adelay, n)


def _rate(n: int, seconds: float) -> dict[str, Any]:
    # The warm-up job counts as queued work for a following drain.
    return {"jobs": n, "queued": n + 1, "seconds": seconds, "jobs_per_s": n / seconds}


def drain(
    n: int, concurrency: int, round_trips: bool, uvloop: bool, queues: int = 0, stop: bool = False
) -> dict[str, Any]:
    """Run the queued jobs in burst mode (timed first body -> last body: runner.Span); with
    ``stop``, a worker that is not in burst mode stops after ``n`` bodies (a slice of a backlog).
    One worker serves every queue of :func:`queue_names`."""
    reader = count_round_trips() if round_trips else None
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    worker = Worker(
        app.settings, app.registry, queues=queue_names(queues), concurrency=concurrency,
        burst=not stop,
    )  # fmt: skip

    async def run() -> Any:
        if not stop:
            return await worker.run()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_at, worker, span)
            return await worker.run()

    stats = anyio.run(run, backend_options={"use_uvloop": uvloop})
    return drain_result(
        span, started, cpu_started, jobs=stats.processed, round_trips=reader() if reader else None
    )


async def _stop_at(worker: Worker, span: Any) -> None:
    await anyio.to_thread.run_sync(span.done.wait, 600)
    worker.stop()


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
        emit(enqueue(args.mode, args.n, args.kind, queues=args.queues))
    elif args.workload == "fill":
        emit(enqueue("bulk", args.n - 1, args.kind, args.body, args.queues))
    elif args.workload == "kick":
        stamp.delay()
        emit({"queued": 1})
    elif args.workload == "drain":
        stop = args.stop_after
        emit(
            drain(args.n, args.concurrency, args.count_round_trips, args.uvloop, args.queues, stop)
        )
    elif args.workload == "serve":
        serve(args.concurrency, args.uvloop)
    else:
        emit(latency(args.samples))


if __name__ == "__main__":
    main()
