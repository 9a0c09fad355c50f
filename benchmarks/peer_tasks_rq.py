"""RQ's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see ``runner.py``).

RQ has no asyncio producer and runs one job at a time per worker process (``--concurrency`` is
ignored; the figure says 1). Its default ``Worker`` forks a child per job; ``RQ_WORKER=simple``
runs jobs in the worker process itself (``SimpleWorker``), which is faster on no-op jobs.
"""

from __future__ import annotations

import os
import time
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, Worker
from runner import (
    count_round_trips,
    cpu_s,
    drain_result,
    emit,
    measure_pickup,
    parse,
    prefix,
    redis_url,
    run_body,
    stamp_now,
    timed_calls,
    track,
)

STAMP = "peer_tasks_rq.stamp"
_client = Redis.from_url(redis_url())
BULK_CHUNK = 1000


def noop() -> None:
    """Does nothing."""
    run_body("noop", _client)


def incr() -> None:
    """One Redis INCR."""
    run_body("incr", _client)


def sleep() -> None:
    """Waits 1 ms."""
    run_body("sleep", _client)


def cpu() -> None:
    """Burns 1 ms of CPU."""
    run_body("cpu", _client)


def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    stamp_now(Redis.from_url(redis_url()))


def _queue() -> Queue:
    return Queue(prefix() + "-rq", connection=Redis.from_url(redis_url()))


def _worker_class() -> type[Worker]:
    return SimpleWorker if os.environ.get("RQ_WORKER") == "simple" else Worker


def enqueue(mode: str, n: int, body: str = "noop") -> dict[str, Any]:
    """Enqueue ``n`` jobs one call at a time (sync) or with ``enqueue_many`` (bulk)."""
    q, func = _queue(), f"peer_tasks_rq.{body}"
    if mode == "sync":
        return timed_calls(lambda: q.enqueue(func), n)
    q.enqueue(func)
    started = time.perf_counter()
    for done in range(0, n, BULK_CHUNK):
        batch = [Queue.prepare_data(func) for _ in range(min(BULK_CHUNK, n - done))]
        with q.connection.pipeline() as pipe:
            q.enqueue_many(batch, pipeline=pipe)
            pipe.execute()
    seconds = time.perf_counter() - started
    return {"jobs": n, "queued": n + 1, "seconds": seconds, "jobs_per_s": n / seconds}


def drain(n: int, round_trips: bool) -> dict[str, Any]:
    """Run the queued jobs in burst mode (timed first body -> last body: runner.Span; the
    forking worker runs bodies in children, so it is timed from the worker's start to its end)."""
    reader = count_round_trips() if round_trips else None
    q = _queue()
    queued = q.count
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    worker = _worker_class()([q], connection=q.connection)
    worker.work(burst=True, logging_level="WARNING")
    done = queued - q.count - q.failed_job_registry.count
    return drain_result(
        span,
        started,
        cpu_started,
        jobs=done,
        round_trips=reader() if reader else None,
        concurrency=1,
        worker_class=_worker_class().__name__,
    )


def serve() -> None:
    """An idle worker for the latency workload; runs until the driver terminates it."""
    q = _queue()
    _worker_class()([q], connection=q.connection).work(logging_level="WARNING")


def latency(samples: int, warmup: int = 5) -> dict[str, Any]:
    """Enqueue one job at a time on an idle worker; gap from ``enqueue`` to the task's start."""
    q = _queue()
    return measure_pickup(lambda: q.enqueue(STAMP), q.connection.blpop, samples, warmup)


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    if args.workload == "enqueue":
        if args.mode == "async":
            emit({"unsupported": "RQ has no asyncio producer"})
            return
        emit(enqueue(args.mode, args.n))
    elif args.workload == "fill":
        emit(enqueue("bulk", args.n - 1, args.body))
    elif args.workload == "drain":
        if args.kind != "sync":
            emit({"unsupported": "RQ runs plain functions only"})
            return
        emit(drain(args.n, args.count_round_trips))
    elif args.workload == "serve":
        serve()
    elif args.workload == "kick":
        _queue().enqueue(STAMP)
        emit({"queued": 1})
    else:
        emit(latency(args.samples))


if __name__ == "__main__":
    main()
