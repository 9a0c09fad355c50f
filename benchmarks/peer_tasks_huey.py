"""Huey's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour Huey: ``RedisHuey(results=False)`` (no result writes; taskforge keeps a
record per job), its default blocking ``BRPOP`` fetch (no polling delay), thread workers
(``-k thread``, :data:`THREADS` of them; ``--concurrency`` of the driver sets the number),
periodic tasks off. Huey has no asyncio producer and no bulk enqueue (the fill pipelines its
``LPUSH``), and no burst mode: a drain ends when the task bodies have run N times
(:class:`runner.Span`).
"""

from __future__ import annotations

import time
from typing import Any

from huey import RedisHuey
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

#: Thread workers in the one consumer process (Huey's default is 1).
THREADS = 16

huey = RedisHuey(prefix() + "-huey", url=redis_url(), results=False)
_client = Redis.from_url(redis_url())


@huey.task()
def noop() -> None:
    """Does nothing."""
    run_body("noop", _client)


@huey.task()
def incr() -> None:
    """One Redis INCR."""
    run_body("incr", _client)


@huey.task()
def sleep() -> None:
    """Waits 1 ms."""
    run_body("sleep", _client)


@huey.task()
def cpu() -> None:
    """Burns 1 ms of CPU."""
    run_body("cpu", _client)


@huey.task()
def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    stamp_now(_client)


BODIES = {"noop": noop, "incr": incr, "sleep": sleep, "cpu": cpu}


BULK_CHUNK = 1000


def fill(n: int, body: str) -> dict[str, Any]:
    """Queue ``n`` jobs fast: Huey's own message (``serialize_task``, what ``task()`` sends) pushed
    as ``task()`` pushes it (``LPUSH``), 1,000 to a pipeline. The records are the same as one at a
    time; only the round trips differ (Huey has no bulk enqueue of its own)."""
    task, key = BODIES[body], huey.storage.queue_key
    started = time.perf_counter()
    for done in range(0, n, BULK_CHUNK):
        pipe = _client.pipeline(transaction=False)
        for _ in range(min(BULK_CHUNK, n - done)):
            pipe.lpush(key, huey.serialize_task(task.s()))
        pipe.execute()
    seconds = time.perf_counter() - started
    return {"jobs": n, "queued": n, "seconds": seconds, "jobs_per_s": n / seconds}


def _consumer(threads: int) -> Any:
    return huey.create_consumer(
        workers=threads, worker_type="thread", periodic=False, check_worker_health=False
    )


def drain(n: int, threads: int) -> dict[str, Any]:
    """Run the queued jobs until the bodies have run ``n`` times."""
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    consumer = _consumer(threads)
    consumer.start()
    span.done.wait(600)
    result = drain_result(span, started, cpu_started, concurrency=threads)
    consumer.stop(graceful=True)
    return result


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    threads = min(getattr(args, "concurrency", THREADS), THREADS)
    if args.workload == "enqueue":
        if args.mode != "sync":
            emit({"unsupported": f"Huey has no {args.mode} enqueue"})
            return
        emit(timed_calls(noop, args.n))
    elif getattr(args, "queues", 0) > 1:
        emit({"unsupported": "a Huey consumer serves one queue"})
    elif args.workload == "fill":
        emit(fill(args.n, args.body))
    elif args.workload == "drain":
        emit(drain(args.n, threads))
    elif args.workload == "serve":
        _consumer(threads).run()
    elif args.workload == "kick":
        stamp()
        emit({"queued": 1})
    else:
        emit(measure_pickup(stamp, _client.blpop, args.samples, warmup=5))


if __name__ == "__main__":
    main()
