"""BullMQ's side of the benchmark (its Python package, ``bullmq`` on PyPI): the same workloads
as ``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour BullMQ: ``removeOnComplete`` (a finished job's hash is deleted at once:
BullMQ's documented setting for throughput and memory), ``concurrency`` = the driver's, its
default blocking ``BZPOPMIN`` wait on the queue's marker. Its producer is asyncio only; bulk is
``Queue.addBulk``. No burst mode: a drain ends when the task bodies have run N times
(:class:`runner.Countdown`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullmq import Queue, Worker
from redis.asyncio import Redis
from runner import (
    BODY_S,
    STAMP_SUFFIX,
    Countdown,
    ameasure_pickup,
    burn_cpu,
    counter_key,
    cpu_s,
    drain_result,
    emit,
    enqueue_result,
    parse,
    prefix,
    redis_url,
)

BULK_CHUNK = 1000
NAME = "bench"
_clients: dict[str, Any] = {}
_countdown: list[Countdown] = []


def _opts() -> dict[str, Any]:
    return {"connection": redis_url(), "prefix": prefix() + "-bull"}


def _queue() -> Queue:
    queue = _clients.get("q")
    if queue is None:
        queue = _clients["q"] = Queue(NAME, _opts())
    return queue  # type: ignore[no-any-return]


def _client() -> Redis:
    client = _clients.get("c")
    if client is None:
        client = _clients["c"] = Redis.from_url(redis_url())
    return client  # type: ignore[no-any-return]


async def _body(name: str) -> None:
    if name == "incr":
        await _client().incr(counter_key())
    elif name == "sleep":
        await asyncio.sleep(BODY_S)
    elif name == "cpu":
        burn_cpu()
    elif name == "stamp":
        started = time.monotonic()
        await _client().rpush(prefix() + STAMP_SUFFIX, repr(started))
        return
    if _countdown:
        _countdown[0].hit()


async def process(job: Any, token: str) -> None:
    """The worker's one processor: the job's name says which body to run."""
    await _body(job.name)


ADD_OPTS = {"removeOnComplete": True}


async def _enqueue(mode: str, n: int, body: str = "noop") -> dict[str, Any]:
    queue = _queue()
    await queue.add(body, {}, ADD_OPTS)
    started = time.perf_counter()
    if mode == "async":
        gaps = []
        for _ in range(n):
            sent = time.perf_counter()
            await queue.add(body, {}, ADD_OPTS)
            gaps.append(time.perf_counter() - sent)
        result = enqueue_result(gaps, time.perf_counter() - started)
        await queue.close()
        return result
    for done in range(0, n, BULK_CHUNK):
        jobs = [{"name": body, "data": {}, "opts": ADD_OPTS}] * min(BULK_CHUNK, n - done)
        await queue.addBulk(jobs)
    seconds = time.perf_counter() - started
    await queue.close()
    return {"jobs": n, "queued": n + 1, "seconds": seconds, "jobs_per_s": n / seconds}


def _worker(concurrency: int) -> Worker:
    return Worker(NAME, process, {**_opts(), "concurrency": concurrency})


async def _drain(n: int, concurrency: int) -> dict[str, Any]:
    countdown = Countdown(n)
    _countdown.append(countdown)
    started, cpu_started = time.perf_counter(), cpu_s()
    worker = _worker(concurrency)
    await asyncio.to_thread(countdown.done.wait, 600)
    seconds = time.perf_counter() - started
    result = drain_result(n, seconds, cpu_started, concurrency=concurrency)
    await worker.close(force=True)
    return result


async def _serve(concurrency: int) -> None:
    _worker(concurrency)
    await asyncio.Event().wait()


async def _latency(samples: int, warmup: int = 5) -> dict[str, Any]:
    queue = _queue()
    return await ameasure_pickup(
        lambda: queue.add("stamp", {}, ADD_OPTS), _client().blpop, samples, warmup
    )


async def _kick() -> dict[str, Any]:
    await _queue().add("stamp", {}, ADD_OPTS)
    return {"queued": 1}


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    if args.workload == "enqueue":
        if args.mode == "sync":
            emit({"unsupported": "BullMQ's Python package has no sync producer"})
            return
        emit(asyncio.run(_enqueue(args.mode, args.n)))
    elif args.workload == "fill":
        emit(asyncio.run(_enqueue("bulk", args.n - 1, args.body)))
    elif args.workload == "drain":
        emit(asyncio.run(_drain(args.n, args.concurrency)))
    elif args.workload == "serve":
        asyncio.run(_serve(args.concurrency))
    elif args.workload == "kick":
        emit(asyncio.run(_kick()))
    else:
        emit(asyncio.run(_latency(args.samples)))


if __name__ == "__main__":
    main()
