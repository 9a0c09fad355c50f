"""Dramatiq's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see
``runner.py``).

Settings that favour Dramatiq: one worker process with :data:`THREADS` threads (its CLI default
is one process per core x 8 threads; one process for every system here), ``worker_timeout`` of
:data:`WORKER_TIMEOUT_MS` instead of 1,000 ms (Dramatiq's Redis consumer polls, backing off up
to this when the queue is empty: the default makes pickup latency ~0.5 s), no result backend,
``max_retries=0``. Dramatiq has no asyncio producer, no bulk enqueue and no burst mode: a drain
ends when the task bodies have run N times (:class:`runner.Span`).
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis import Redis
from runner import (
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

THREADS = 16
WORKER_TIMEOUT_MS = 100

broker = RedisBroker(url=redis_url(), namespace=prefix() + "-dramatiq")
dramatiq.set_broker(broker)
_client = Redis.from_url(redis_url())
QUEUE = "bench"


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    """Does nothing."""
    run_body("noop", _client)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def incr() -> None:
    """One Redis INCR."""
    run_body("incr", _client)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def sleep() -> None:
    """Waits 1 ms."""
    run_body("sleep", _client)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def cpu() -> None:
    """Burns 1 ms of CPU."""
    run_body("cpu", _client)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    stamp_now(_client)


BODIES = {"noop": noop, "incr": incr, "sleep": sleep, "cpu": cpu}


def _worker(threads: int) -> dramatiq.Worker:
    return dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)


def drain(n: int, threads: int) -> dict[str, Any]:
    """Run the queued jobs until the bodies have run ``n`` times."""
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    worker = _worker(threads)
    worker.start()
    span.done.wait(600)
    result = drain_result(span, started, cpu_started, concurrency=threads)
    worker.stop()
    return result


def serve(threads: int) -> None:
    """An idle worker for the latency workload; runs until SIGTERM."""
    _worker(threads).start()
    while True:
        time.sleep(3600)


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    threads = min(getattr(args, "concurrency", THREADS), THREADS)
    if args.workload == "enqueue":
        if args.mode != "sync":
            emit({"unsupported": f"Dramatiq has no {args.mode} enqueue"})
            return
        emit(timed_calls(noop.send, args.n))
    elif args.workload == "fill":
        emit(timed_calls(BODIES[args.body].send, args.n - 1))
    elif args.workload == "drain":
        emit(drain(args.n, threads))
    elif args.workload == "serve":
        serve(threads)
    elif args.workload == "kick":
        stamp.send()
        emit({"queued": 1})
    else:
        emit(measure_pickup(stamp.send, _client.blpop, args.samples, warmup=5))


if __name__ == "__main__":
    main()
