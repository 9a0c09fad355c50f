"""taskiq's side of the benchmark (with taskiq-redis): the same workloads as
``taskforge_tasks.py`` (see ``runner.py``).

Settings that favour taskiq: ``ListQueueBroker`` (a plain ``LPUSH``/``BRPOP`` list, its fastest
broker: no acknowledgement, a job a dead worker held is lost; ``RedisStreamBroker`` is the one
with acks), no result backend, ``max_async_tasks`` = the driver's concurrency, the receiver run
in-process (``run_receiver_task``, as ``taskiq worker`` does in each of its processes). taskiq
has no sync producer, no bulk enqueue and no burst mode: a drain ends when the task bodies have
run N times (:class:`runner.Span`).
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
from taskiq.api import run_receiver_task
from taskiq_redis import ListQueueBroker

broker = ListQueueBroker(redis_url(), queue_name=prefix() + "-taskiq")
_clients: dict[str, Redis] = {}


def _client() -> Redis:
    client = _clients.get("c")
    if client is None:
        client = _clients["c"] = Redis.from_url(redis_url())
    return client


@broker.task(task_name="noop")
async def noop() -> None:
    """Does nothing."""
    await arun_body("noop", _client())


@broker.task(task_name="incr")
async def incr() -> None:
    """One Redis INCR."""
    await arun_body("incr", _client())


@broker.task(task_name="sleep")
async def sleep() -> None:
    """Waits 1 ms."""
    await arun_body("sleep", _client())


@broker.task(task_name="cpu")
async def cpu() -> None:
    """Burns 1 ms of CPU on the event loop."""
    await arun_body("cpu", _client())


@broker.task(task_name="stamp")
async def stamp() -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    await astamp_now(_client())


BODIES = {"noop": noop, "incr": incr, "sleep": sleep, "cpu": cpu}


async def _enqueue(n: int, body: str = "noop") -> dict[str, Any]:
    await broker.startup()
    result = await atimed_calls(BODIES[body].kiq, n)
    await broker.shutdown()
    return result


async def _drain(n: int, concurrency: int) -> dict[str, Any]:
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    await broker.startup()
    receiver = asyncio.create_task(run_receiver_task(broker, max_async_tasks=concurrency))
    await asyncio.to_thread(span.done.wait, 600)
    result = drain_result(span, started, cpu_started, concurrency=concurrency)
    receiver.cancel()
    return result


async def _serve(concurrency: int) -> None:
    await broker.startup()
    await run_receiver_task(broker, max_async_tasks=concurrency)


async def _latency(samples: int) -> dict[str, Any]:
    await broker.startup()
    return await ameasure_pickup(stamp.kiq, _client().blpop, samples, warmup=5)


async def _kick() -> dict[str, Any]:
    await broker.startup()
    await stamp.kiq()
    return {"queued": 1}


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    if args.workload == "enqueue":
        if args.mode != "async":
            emit({"unsupported": f"taskiq has no {args.mode} enqueue"})
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
