"""What testing mode costs a test: one eager ``.delay()``, and one drain of 100 jobs.

    python benchmarks/testing_bench.py                       # memory:// and a private redis-server
    python benchmarks/testing_bench.py --redis-url redis://localhost:6379/15 --n 50

An eager ``.delay()`` enqueues the job and runs a burst worker until the queues are empty (the
real worker and executor: a worker starts and stops per call), so its cost is mostly worker
start-up plus three fetch script calls. On ``memory://`` fakeredis runs the Lua scripts in Python,
which is slower than a real Redis. Medians of ``--n`` calls; a busy machine shows up as noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from taskforge import Settings, Taskforge


def measure(url: str, n: int) -> dict[str, float]:
    """Median ms of an eager .delay() of a sync and an async no-op task, and of a 100-job drain."""
    app = Taskforge(Settings(redis_url="redis://127.0.0.1:1/0"))

    @app.task(name="bench.sync_noop")
    def sync_noop() -> None: ...

    @app.task(name="bench.async_noop")
    async def async_noop() -> None: ...

    out: dict[str, float] = {}
    with app.testing(redis_url=url):
        for name, task in (("eager .delay() sync task", sync_noop), ("async task", async_noop)):
            task.delay()  # warm up: script load, thread pool
            times = []
            for _ in range(n):
                start = time.perf_counter()
                task.delay()
                times.append(time.perf_counter() - start)
            out[name] = statistics.median(times) * 1000
    with app.testing(redis_url=url, eager=False) as bed:
        times = []
        for _ in range(max(3, n // 10)):
            app.enqueue_many([sync_noop.s() for _ in range(100)])
            start = time.perf_counter()
            bed.drain()
            times.append(time.perf_counter() - start)
        out["drain of 100 sync jobs"] = statistics.median(times) * 1000
    return out


def _private_server() -> tuple[Any, str]:
    from tests.support.redis_server import RedisServer

    server = RedisServer().start()
    return server, server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=None, help="a real Redis (default: start one)")
    parser.add_argument("--n", type=int, default=30, help="calls per figure")
    args = parser.parse_args()
    server, url = (None, args.redis_url) if args.redis_url else _private_server()
    try:
        results = {"memory://": measure("memory://", args.n), "redis": measure(url, args.n)}
    finally:
        if server is not None:
            server.cleanup()
    names = list(results["memory://"])
    width = max(map(len, names))
    print(f"testing mode, median ms over {args.n} calls")
    print(f"  {'':<{width}}  {'memory://':>10}  {'redis':>8}")
    for name in names:
        memory_ms, redis_ms = results["memory://"][name], results["redis"][name]
        print(f"  {name:<{width}}  {memory_ms:>10.1f}  {redis_ms:>8.1f}")
    print(
        "RESULT "
        + json.dumps({k: {n: round(v, 1) for n, v in r.items()} for k, r in results.items()})
    )


if __name__ == "__main__":
    main()
