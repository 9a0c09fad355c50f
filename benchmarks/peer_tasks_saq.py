"""SAQ's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour SAQ: its Redis queue with ``hiredis``, ``concurrency`` = the driver's, the
worker run in-process (as ``saq`` does), its default blocking dequeue. SAQ's producer is asyncio
only and has no bulk enqueue (``Queue.map`` gathers one-call enqueues and waits for results);
its burst mode waits ``dequeue_timeout`` after the last job, so a drain ends instead when the
task bodies have run N times (:class:`runner.Span`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

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
from saq import Queue, Worker

_clients: dict[str, Any] = {}


def _queue() -> Queue:
    queue = _clients.get("q")
    if queue is None:
        queue = _clients["q"] = Queue.from_url(redis_url(), name=prefix() + "-saq")
    return queue  # type: ignore[no-any-return]


def _client() -> Redis:
    client = _clients.get("c")
    if client is None:
        client = _clients["c"] = Redis.from_url(redis_url())
    return client  # type: ignore[no-any-return]


async def noop(ctx: dict[str, Any]) -> None:
    """Does nothing."""
    await arun_body("noop", _client())


async def incr(ctx: dict[str, Any]) -> None:
    """One Redis INCR."""
    await arun_body("incr", _client())


async def sleep(ctx: dict[str, Any]) -> None:
    """Waits 1 ms."""
    await arun_body("sleep", _client())


async def cpu(ctx: dict[str, Any]) -> None:
    """Burns 1 ms of CPU on the event loop."""
    await arun_body("cpu", _client())


async def stamp(ctx: dict[str, Any]) -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    await astamp_now(_client())


FUNCTIONS = [noop, incr, sleep, cpu, stamp]


async def _enqueue(n: int, body: str = "noop") -> dict[str, Any]:
    queue = _queue()
    return await atimed_calls(lambda: queue.enqueue(body), n)


def _worker(concurrency: int) -> Worker:
    return Worker(_queue(), functions=FUNCTIONS, concurrency=concurrency)  # type: ignore[arg-type]


async def _drain(n: int, concurrency: int) -> dict[str, Any]:
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    worker = _worker(concurrency)
    running = asyncio.create_task(worker.start())
    await asyncio.to_thread(span.done.wait, 600)
    result = drain_result(span, started, cpu_started, concurrency=concurrency)
    await worker.stop()
    running.cancel()
    return result


async def _serve(concurrency: int) -> None:
    await _worker(concurrency).start()


async def _latency(samples: int) -> dict[str, Any]:
    queue = _queue()
    return await ameasure_pickup(lambda: queue.enqueue("stamp"), _client().blpop, samples, 5)


async def _kick() -> dict[str, Any]:
    await _queue().enqueue("stamp")
    return {"queued": 1}


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    if args.workload == "enqueue":
        if args.mode != "async":
            emit({"unsupported": f"SAQ has no {args.mode} enqueue"})
            return
        emit(asyncio.run(_enqueue(args.n)))
    elif args.workload == "fill":
        emit(asyncio.run(_enqueue(args.n - 1, args.body)))
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
