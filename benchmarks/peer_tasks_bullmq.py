"""BullMQ's side of the benchmark (its Python package, ``bullmq`` on PyPI): the same workloads
as ``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour BullMQ: ``removeOnComplete`` (a finished job's hash is deleted at once:
BullMQ's documented setting for throughput and memory), ``concurrency`` = the driver's, its
default blocking ``BZPOPMIN`` wait on the queue's marker. Its producer is asyncio only; bulk is
``Queue.addBulk``. No burst mode: a drain ends when the task bodies have run N times
(:class:`runner.Span`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bullmq import Queue, Worker
from redis.asyncio import Redis
from runner import (
    ameasure_pickup,
    arun_body,
    astamp_now,
    atimed_calls,
    cpu_s,
    drain_result,
    emit,
    parse,
    prefix,
    redis_url,
    track,
)

BULK_CHUNK = 1000
NAME = "bench"
_clients: dict[str, Any] = {}


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
    if name == "stamp":
        await astamp_now(_client())
    else:
        await arun_body(name, _client())


async def process(job: Any, token: str) -> None:
    """The worker's one processor: the job's name says which body to run."""
    await _body(job.name)


ADD_OPTS = {"removeOnComplete": True}


async def _enqueue(mode: str, n: int, body: str = "noop") -> dict[str, Any]:
    queue = _queue()
    if mode == "async":
        result = await atimed_calls(lambda: queue.add(body, {}, ADD_OPTS), n)
        await queue.close()
        return result
    await queue.add(body, {}, ADD_OPTS)
    started = time.perf_counter()
    for done in range(0, n, BULK_CHUNK):
        jobs = [{"name": body, "data": {}, "opts": ADD_OPTS}] * min(BULK_CHUNK, n - done)
        await queue.addBulk(jobs)
    seconds = time.perf_counter() - started
    await queue.close()
    return {"jobs": n, "queued": n + 1, "seconds": seconds, "jobs_per_s": n / seconds}


def _worker(concurrency: int) -> Worker:
    return Worker(NAME, process, {**_opts(), "concurrency": concurrency})


async def _drain(n: int, concurrency: int) -> dict[str, Any]:
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    worker = _worker(concurrency)
    await asyncio.to_thread(span.done.wait, 600)
    result = drain_result(span, started, cpu_started, concurrency=concurrency)
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
