"""Dramatiq's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see
``runner.py``).

Settings that favour Dramatiq: one worker process with :data:`THREADS` threads (its CLI default
is one process per core x 8 threads; one process for every system here), ``worker_timeout`` of
:data:`WORKER_TIMEOUT_MS` instead of 1,000 ms (Dramatiq's Redis consumer polls, backing off up
to this when the queue is empty: the default makes pickup latency ~0.5 s), no result backend,
``max_retries=0``. Dramatiq has no asyncio producer, no bulk enqueue and no burst mode: a drain
ends when the task bodies have run N times (:class:`runner.Countdown`).
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from redis import Redis
from runner import (
    BODY_S,
    STAMP_SUFFIX,
    Countdown,
    burn_cpu,
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

THREADS = 16
WORKER_TIMEOUT_MS = 100

broker = RedisBroker(url=redis_url(), namespace=prefix() + "-dramatiq")
dramatiq.set_broker(broker)
_client = Redis.from_url(redis_url())
_countdown: list[Countdown] = []
QUEUE = "bench"


def _count() -> None:
    if _countdown:
        _countdown[0].hit()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop() -> None:
    """Does nothing."""
    _count()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def incr() -> None:
    """One Redis INCR."""
    _client.incr(counter_key())
    _count()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def sleep() -> None:
    """Waits 1 ms."""
    time.sleep(BODY_S)
    _count()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def cpu() -> None:
    """Burns 1 ms of CPU."""
    burn_cpu()
    _count()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    started = time.monotonic()
    _client.rpush(prefix() + STAMP_SUFFIX, repr(started))


BODIES = {"noop": noop, "incr": incr, "sleep": sleep, "cpu": cpu}


def enqueue(n: int, body: str = "noop") -> dict[str, Any]:
    """Enqueue ``n`` jobs one ``send()`` at a time."""
    actor = BODIES[body]
    actor.send()
    started = time.perf_counter()
    gaps = []
    for _ in range(n):
        sent = time.perf_counter()
        actor.send()
        gaps.append(time.perf_counter() - sent)
    return enqueue_result(gaps, time.perf_counter() - started)


def _worker(threads: int) -> dramatiq.Worker:
    return dramatiq.Worker(broker, worker_threads=threads, worker_timeout=WORKER_TIMEOUT_MS)


def drain(n: int, threads: int) -> dict[str, Any]:
    """Run the queued jobs until the bodies have run ``n`` times."""
    countdown = Countdown(n)
    _countdown.append(countdown)
    started, cpu_started = time.perf_counter(), cpu_s()
    worker = _worker(threads)
    worker.start()
    countdown.done.wait(600)
    seconds = time.perf_counter() - started
    result = drain_result(n, seconds, cpu_started, concurrency=threads)
    worker.stop()
    return result


def serve(threads: int) -> None:
    """An idle worker for the latency workload; runs until SIGTERM."""
    _worker(threads).start()
    while True:
        time.sleep(3600)


def latency(samples: int, warmup: int = 5) -> dict[str, Any]:
    """Enqueue one job at a time on an idle worker; gap from ``send()`` to the task's start."""
    return measure_pickup(stamp.send, _client.blpop, samples, warmup)


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    threads = min(getattr(args, "concurrency", THREADS), THREADS)
    if args.workload == "enqueue":
        if args.mode != "sync":
            emit({"unsupported": f"Dramatiq has no {args.mode} enqueue"})
            return
        emit(enqueue(args.n))
    elif args.workload == "fill":
        emit(enqueue(args.n - 1, args.body))
    elif args.workload == "drain":
        emit(drain(args.n, threads))
    elif args.workload == "serve":
        serve(threads)
    elif args.workload == "kick":
        stamp.send()
        emit({"queued": 1})
    else:
        emit(latency(args.samples))


if __name__ == "__main__":
    main()
