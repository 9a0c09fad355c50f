"""Huey's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour Huey: ``RedisHuey(results=False)`` (no result writes; taskforge keeps a
record per job), its default blocking ``BRPOP`` fetch (no polling delay), thread workers
(``-k thread``, :data:`THREADS` of them; ``--concurrency`` of the driver sets the number),
periodic tasks off. Huey has no asyncio producer and no bulk enqueue, and no burst mode: a
drain ends when the task bodies have run N times (:class:`runner.Countdown`).
"""

from __future__ import annotations

import time
from typing import Any

from huey import RedisHuey
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

#: Thread workers in the one consumer process (Huey's default is 1).
THREADS = 16

huey = RedisHuey(prefix() + "-huey", url=redis_url(), results=False)
_client = Redis.from_url(redis_url())
_countdown: list[Countdown] = []


def _count() -> None:
    if _countdown:
        _countdown[0].hit()


@huey.task()
def noop() -> None:
    """Does nothing."""
    _count()


@huey.task()
def incr() -> None:
    """One Redis INCR."""
    _client.incr(counter_key())
    _count()


@huey.task()
def sleep() -> None:
    """Waits 1 ms."""
    time.sleep(BODY_S)
    _count()


@huey.task()
def cpu() -> None:
    """Burns 1 ms of CPU."""
    burn_cpu()
    _count()


@huey.task()
def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    started = time.monotonic()
    _client.rpush(prefix() + STAMP_SUFFIX, repr(started))


BODIES = {"noop": noop, "incr": incr, "sleep": sleep, "cpu": cpu}


def enqueue(n: int, body: str = "noop") -> dict[str, Any]:
    """Enqueue ``n`` jobs one call at a time."""
    task = BODIES[body]
    task()
    started = time.perf_counter()
    gaps = []
    for _ in range(n):
        sent = time.perf_counter()
        task()
        gaps.append(time.perf_counter() - sent)
    return enqueue_result(gaps, time.perf_counter() - started)


def _consumer(threads: int) -> Any:
    return huey.create_consumer(
        workers=threads, worker_type="thread", periodic=False, check_worker_health=False
    )


def drain(n: int, threads: int) -> dict[str, Any]:
    """Run the queued jobs until the bodies have run ``n`` times."""
    countdown = Countdown(n)
    _countdown.append(countdown)
    started, cpu_started = time.perf_counter(), cpu_s()
    consumer = _consumer(threads)
    consumer.start()
    countdown.done.wait(600)
    seconds = time.perf_counter() - started
    consumer.stop(graceful=True)
    return drain_result(n, seconds, cpu_started, concurrency=threads)


def serve(threads: int) -> None:
    """An idle consumer for the latency workload; runs until SIGTERM."""
    _consumer(threads).run()


def latency(samples: int, warmup: int = 5) -> dict[str, Any]:
    """Enqueue one job at a time on an idle consumer; gap from the call to the task's start."""
    return measure_pickup(stamp, _client.blpop, samples, warmup)


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    threads = min(getattr(args, "concurrency", THREADS), THREADS)
    if args.workload == "enqueue":
        if args.mode != "sync":
            emit({"unsupported": f"Huey has no {args.mode} enqueue"})
            return
        emit(enqueue(args.n))
    elif args.workload == "fill":
        emit(enqueue(args.n - 1, args.body))
    elif args.workload == "drain":
        emit(drain(args.n, threads))
    elif args.workload == "serve":
        serve(threads)
    elif args.workload == "kick":
        stamp()
        emit({"queued": 1})
    else:
        emit(latency(args.samples))


if __name__ == "__main__":
    main()
