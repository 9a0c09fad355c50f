"""Cache get/set throughput: taskforge's cache service next to raw redis-py on the same Redis.

    python benchmarks/cache_bench.py                         # starts a private redis-server
    python benchmarks/cache_bench.py --redis-url redis://localhost:6379/0 --n 20000

Each figure is operations per second over ``--n`` operations on one small JSON document
(``{"id": ..., "name": ..., "tags": [...], "n": ...}``), both sides encoding JSON:

* ``seq``: one caller, one operation at a time (round-trip bound);
* ``c50``: 50 concurrent callers (asyncio tasks / threads) sharing one client.

Every operation touches its own key (no two callers share one, so the cache's in-process
coalescing of concurrent misses does not flatter it). Each figure is the best of ``--repeat``
runs; the machine's other load shows up as noise, so compare figures of one run only.

The raw side is redis-py doing ``SET key json EX ttl`` / ``GET key`` + ``json.loads``; the cache
side is ``CacheService.set`` / ``get`` / ``get_or_fetch`` (hit). Keys live under a throwaway
namespace and are removed at the end (SCAN + UNLINK), never with FLUSHALL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import redis
import redis.asyncio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from taskforge.cache import CacheService  # noqa: E402
from taskforge.settings import Settings  # noqa: E402

DOC = {"id": "wf-123", "name": "onboarding", "tags": ["a", "b", "c"], "n": 42}
CONCURRENCY = 50


REPEAT = 3


async def _arate(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    """Best ops/s of ``op(i)`` for i < n, run by ``concurrency`` tasks."""
    return max([await _arate_once(n, concurrency, op) for _ in range(REPEAT)])


async def _arate_once(n: int, concurrency: int, op: Callable[[int], Awaitable[Any]]) -> float:
    per_task = n // concurrency

    async def worker(offset: int) -> None:
        for i in range(offset, offset + per_task):
            await op(i)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for t in range(concurrency):
            tg.start_soon(worker, t * per_task)
    return per_task * concurrency / (time.perf_counter() - started)


def _rate(n: int, concurrency: int, op: Callable[[int], Any]) -> float:
    """Best ops/s of ``op(i)`` for i < n, run by ``concurrency`` threads."""
    return max(_rate_once(n, concurrency, op) for _ in range(REPEAT))


def _rate_once(n: int, concurrency: int, op: Callable[[int], Any]) -> float:
    per_thread = n // concurrency

    def worker(offset: int) -> None:
        for i in range(offset, offset + per_thread):
            op(i)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, [t * per_thread for t in range(concurrency)]))
    return per_thread * concurrency / (time.perf_counter() - started)


async def bench_async(url: str, ns: str, n: int) -> dict[str, float]:
    raw = redis.asyncio.Redis.from_url(url, decode_responses=True, max_connections=CONCURRENCY)
    cache = CacheService(Settings(redis_url=url, max_connections=CONCURRENCY), namespace=ns)

    async def raw_set(i: int) -> None:
        await raw.set(f"{ns}:raw:{i}", json.dumps(DOC), ex=300)

    async def raw_get(i: int) -> None:
        json.loads(await raw.get(f"{ns}:raw:{i}") or "null")

    async def cache_set(i: int) -> None:
        await cache.set(f"api_response:{i}", DOC, tenant_id="bench")

    async def cache_get(i: int) -> None:
        await cache.get(f"api_response:{i}", tenant_id="bench")

    async def cache_fetch(i: int) -> None:
        await cache.get_or_fetch(f"api_response:{i}", lambda: DOC, tenant_id="bench")

    out: dict[str, float] = {}
    for c, label in ((1, "seq"), (CONCURRENCY, "c50")):
        out[f"async {label} raw redis-py SET"] = await _arate(n, c, raw_set)
        out[f"async {label} cache.set"] = await _arate(n, c, cache_set)
        out[f"async {label} raw redis-py GET"] = await _arate(n, c, raw_get)
        out[f"async {label} cache.get"] = await _arate(n, c, cache_get)
        out[f"async {label} cache.get_or_fetch (hit)"] = await _arate(n, c, cache_fetch)
    await cache.invalidate_pattern("*", all_tenants=True)
    await cache.aclose()
    await raw.aclose()
    return out


def bench_sync(url: str, ns: str, n: int) -> dict[str, float]:
    raw = redis.Redis.from_url(url, decode_responses=True, max_connections=CONCURRENCY)
    cache = CacheService(Settings(redis_url=url, max_connections=CONCURRENCY), namespace=ns).sync

    out: dict[str, float] = {}
    for c, label in ((1, "seq"), (CONCURRENCY, "c50")):
        out[f"sync  {label} raw redis-py SET"] = _rate(
            n, c, lambda i: raw.set(f"{ns}:raw:{i}", json.dumps(DOC), ex=300)
        )
        out[f"sync  {label} cache.set"] = _rate(
            n, c, lambda i: cache.set(f"api_response:{i}", DOC, tenant_id="bench")
        )
        out[f"sync  {label} raw redis-py GET"] = _rate(
            n, c, lambda i: json.loads(raw.get(f"{ns}:raw:{i}") or "null")
        )
        out[f"sync  {label} cache.get"] = _rate(
            n, c, lambda i: cache.get(f"api_response:{i}", tenant_id="bench")
        )
    cache.invalidate_pattern("*", all_tenants=True)
    for key in list(raw.scan_iter(match=f"{ns}:raw:*", count=1000)):
        raw.unlink(key)
    cache.close()
    raw.close()
    return out


def _private_server() -> tuple[Any, str]:
    from tests.support.redis_server import RedisServer

    server = RedisServer().start()
    return server, server.url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--n", type=int, default=10_000, help="operations per figure")
    parser.add_argument("--repeat", type=int, default=REPEAT, help="runs per figure (best)")
    args = parser.parse_args()
    globals()["REPEAT"] = args.repeat
    server, url = (None, args.redis_url) if args.redis_url else _private_server()
    ns = f"bench-{uuid.uuid4().hex[:8]}:cache"
    try:
        results = anyio.run(bench_async, url, ns, args.n)
        results |= bench_sync(url, ns, args.n)
    finally:
        if server is not None:
            server.cleanup()
    print(f"cache benchmark: n={args.n} per figure, redis-py {redis.__version__}")
    width = max(map(len, results))
    pairs = {}
    for name, ops in results.items():
        print(f"  {name:<{width}}  {ops:>9,.0f} ops/s")
        pairs[name] = ops
    print("RESULT " + json.dumps({k: round(v) for k, v in pairs.items()}))


if __name__ == "__main__":
    main()
