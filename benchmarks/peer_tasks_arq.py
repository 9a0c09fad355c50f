"""arq's side of the benchmark: the same workloads as ``taskforge_tasks.py`` (see ``runner.py``).

arq has no synchronous producer, no bulk enqueue and runs only coroutines: those workloads report
``unsupported``. Its worker polls (``poll_delay``); the benchmark sets 0.05 s instead of arq's
default 0.5 s, which favours arq on drain and latency (the default caps a drain at about
``queue_read_limit`` jobs per 0.5 s).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq import Worker, create_pool
from arq.connections import RedisSettings
from runner import (
    ameasure_pickup,
    arun_body,
    astamp_now,
    atimed_calls,
    count_round_trips,
    cpu_s,
    drain_result,
    emit,
    parse,
    prefix,
    redis_url,
    track,
)

POLL_DELAY_S = 0.05


def _settings() -> RedisSettings:
    return RedisSettings.from_dsn(redis_url())


def _queue() -> str:
    return prefix() + ":arq"


async def noop(ctx: dict[str, Any]) -> None:
    """Does nothing."""
    await arun_body("noop", ctx["redis"])


async def incr(ctx: dict[str, Any]) -> None:
    """One Redis INCR (arq's own pool)."""
    await arun_body("incr", ctx["redis"])


async def sleep(ctx: dict[str, Any]) -> None:
    """Waits 1 ms."""
    await arun_body("sleep", ctx["redis"])


async def cpu(ctx: dict[str, Any]) -> None:
    """Burns 1 ms of CPU on the event loop."""
    await arun_body("cpu", ctx["redis"])


async def stamp(ctx: dict[str, Any]) -> None:
    """Push this job's start time (monotonic, system-wide) for the latency runner."""
    await astamp_now(ctx["redis"])


async def _enqueue(n: int) -> dict[str, Any]:
    pool = await create_pool(_settings())
    result = await atimed_calls(lambda: pool.enqueue_job("noop", _queue_name=_queue()), n)
    await pool.aclose()
    return result


async def _fill(n: int, body: str, chunk: int = 500) -> dict[str, Any]:
    pool = await create_pool(_settings())
    for done in range(0, n, chunk):
        batch = min(chunk, n - done)
        await asyncio.gather(*(pool.enqueue_job(body, _queue_name=_queue()) for _ in range(batch)))
    await pool.aclose()
    return {"queued": n}


def _worker(concurrency: int, burst: bool) -> Worker:
    return Worker(
        functions=[noop, incr, sleep, cpu, stamp],  # type: ignore[list-item]
        queue_name=_queue(),
        redis_settings=_settings(),
        burst=burst,
        max_jobs=concurrency,
        poll_delay=POLL_DELAY_S,
        handle_signals=False,
        log_results=False,
    )


async def _drain(concurrency: int) -> int:
    # arq's Worker binds to the running loop when it is made: make it inside the loop.
    worker = _worker(concurrency, burst=True)
    await worker.async_run()
    return worker.jobs_complete


async def _serve(concurrency: int) -> None:
    await _worker(concurrency, burst=False).async_run()


def drain(n: int, concurrency: int, round_trips: bool) -> dict[str, Any]:
    """Run the queued jobs in burst mode (timed first body -> last body: runner.Span)."""
    reader = count_round_trips() if round_trips else None
    span = track(n)
    started, cpu_started = time.monotonic(), cpu_s()
    done = asyncio.run(_drain(concurrency))
    return drain_result(
        span, started, cpu_started, jobs=done, round_trips=reader() if reader else None
    )


async def _latency(samples: int, warmup: int = 5) -> dict[str, Any]:
    pool = await create_pool(_settings())
    send = lambda: pool.enqueue_job("stamp", _queue_name=_queue())  # noqa: E731
    result = await ameasure_pickup(send, pool.blpop, samples, warmup)
    await pool.aclose()
    return result


def main() -> None:
    """Run one workload and print its RESULT line."""
    args = parse()
    if args.workload == "enqueue":
        if args.mode != "async" or args.kind != "async":
            emit({"unsupported": f"arq has no {args.mode} enqueue of {args.kind} tasks"})
            return
        emit(asyncio.run(_enqueue(args.n)))
    elif args.workload == "fill":
        emit(asyncio.run(_fill(args.n, args.body)))
    elif args.workload == "drain":
        if args.kind != "async":
            emit({"unsupported": "arq runs coroutines only"})
            return
        emit(drain(args.n, args.concurrency, args.count_round_trips))
    elif args.workload == "serve":
        asyncio.run(_serve(args.concurrency))
    elif args.workload == "kick":
        emit(asyncio.run(_fill(1, "stamp")))
    else:
        emit(asyncio.run(_latency(args.samples)))


if __name__ == "__main__":
    main()
