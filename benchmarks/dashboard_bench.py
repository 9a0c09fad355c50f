"""How much a dashboard page costs: server time and Redis work per page load, at scale.

Seeds a private redis-server with ``--queues`` queues holding ``--jobs`` waiting jobs in all
(90 % ready over the three priorities, 10 % scheduled) and an hour of per-minute counters per
queue, then loads each page in-process (the Starlette app driven through httpx's ASGI
transport: server time, no network) and prints, per page, the median and p95 time and the Redis
commands and Redis CPU one load costs (``INFO commandstats``, counting the commands Lua scripts
run inside Redis).

    python benchmarks/dashboard_bench.py                  # 100 queues, 1,000,000 jobs
    python benchmarks/dashboard_bench.py --records 20000  # also 20,000 full job records

By default the waiting jobs are ids in the queues' lists and sorted sets, without records: no
page reads a waiting job's record except the queue listing's one page (``--records`` gives
that page real records to read). Needs the ``dashboard`` extra.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from taskforge import Settings, Taskforge, chain
from taskforge.dashboard import DashboardConfig, create_app
from taskforge.job import JobPriority
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.keys import GlobalKeys, QueueKeys
from tests.support.redis_server import RedisServer

PREFIX = "tfdash"
PAGES = ("/", "/api/overview", "/queues/q000?limit=50", "/dead", "/workers", "/jobs/{job}",
         "/workflows/{workflow}", "/api/workflows/{workflow}")  # fmt: skip


def seed(client: redis.Redis, queues: int, jobs: int, chunk: int = 10_000) -> None:
    """Ready lists and scheduled sets of ``queues`` queues, ``jobs`` ids in all."""
    per_queue = jobs // queues
    now_ms = int(time.time() * 1000)
    for q in range(queues):
        k = QueueKeys(PREFIX, f"q{q:03d}")
        client.sadd(f"{PREFIX}:queues", f"q{q:03d}")
        ids = [f"{q:03d}{i:029x}" for i in range(per_queue)]
        ready, scheduled = ids[: per_queue * 9 // 10], ids[per_queue * 9 // 10 :]
        pipe = client.pipeline(transaction=False)
        for n, prio in enumerate(("high", "normal", "low")):
            part = ready[n::3]
            for i in range(0, len(part), chunk):
                pipe.rpush(k.ready(JobPriority(prio)), *part[i : i + chunk])
        for i in range(0, len(scheduled), chunk):
            pipe.zadd(k.scheduled, {j: now_ms + 3_600_000 + n for n, j in
                                    enumerate(scheduled[i : i + chunk])})  # fmt: skip
        now_min = now_ms // 60_000
        for m in range(now_min - 59, now_min + 1):
            bucket = f"{k.stats}:{m}"
            pipe.hset(bucket, mapping={"done": 50 + m % 13, "failed": m % 3, "depth": per_queue})
            pipe.expire(bucket, 3600)
        pipe.execute()
    now_min = now_ms // 60_000
    for m in range(now_min - 59, now_min + 1):  # what the workers' count_outcomes adds up
        done = queues * (50 + m % 13)
        bucket = f"{GlobalKeys(PREFIX).stats}:{m}"
        client.hset(bucket, mapping={"done": done, "depth": jobs})
        client.expire(bucket, 3600)


def seed_records(settings: Settings, n: int) -> tuple[str, str]:
    """``n`` real jobs at the head of queue q000 (its listing reads their records), and a
    workflow of three steps (its page reads its state and its members' records): their ids."""
    app = Taskforge(settings)
    add = app.task(name="bench.add")(lambda a, b: a + b)
    broker = SyncBroker(settings)
    first = ""
    for i in range(0, n, 1000):
        handles = app.enqueue_many([add.options(queue="q000", priority="high").s(j, j)
                                    for j in range(i, min(n, i + 1000))])  # fmt: skip
        first = first or handles[0].id
    step = add.options(queue="q001")
    workflow = chain(step.s(1, 2), step.s(3), step.s(4)).delay().id
    broker.close()
    app.client.close()
    return first or workflow, workflow


def command_stats(client: redis.Redis) -> tuple[int, int]:
    """(commands, microseconds) Redis has run so far, ``INFO`` itself left out."""
    stats = client.info("commandstats")
    calls = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_info")
    usec = sum(v["usec"] for k, v in stats.items() if k != "cmdstat_info")
    return int(calls), int(usec)


async def measure(
    http: httpx.AsyncClient, path: str, loads: int, stats: Callable[[], tuple[int, int]]
) -> dict[str, Any]:
    """Median and p95 time of ``loads`` loads of ``path``, and Redis work per load."""
    await http.get(path)  # warm: scripts loaded, templates compiled
    times = []
    before = stats()
    for _ in range(loads):
        started = time.perf_counter()
        response = await http.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    after = stats()
    times.sort()
    return {
        "page": path,
        "median_ms": statistics.median(times),
        "p95_ms": times[int(len(times) * 0.95) - 1],
        "commands": (after[0] - before[0]) / loads,
        "redis_us": (after[1] - before[1]) / loads,
    }


async def run(
    args: argparse.Namespace, url: str, job_id: str, workflow_id: str
) -> list[dict[str, Any]]:
    settings = Settings(redis_url=url, prefix=PREFIX)
    app = create_app(settings, config=DashboardConfig())
    client = redis.Redis.from_url(url, decode_responses=True)
    rows = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
        for page in PAGES:
            path = page.format(job=job_id, workflow=workflow_id)
            rows.append(await measure(http, path, args.loads, lambda: command_stats(client)))
        dash = app.state.dashboard
        before = command_stats(client)
        started = time.perf_counter()
        for _ in range(args.loads):
            await dash.live_overview()
        push_ms = (time.perf_counter() - started) * 1000 / args.loads
        after = command_stats(client)
        rows.append({"page": "live: one overview push (all pages)", "median_ms": push_ms,
                     "p95_ms": float("nan"), "commands": (after[0] - before[0]) / args.loads,
                     "redis_us": (after[1] - before[1]) / args.loads})  # fmt: skip
        await dash.admin.aclose()
    client.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    """Seed, measure, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=1000, help="real jobs in q000")
    parser.add_argument("--loads", type=int, default=20, help="loads per page")
    args = parser.parse_args(argv)

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)
        started = time.perf_counter()
        seed(client, args.queues, args.jobs)
        job_id, workflow_id = seed_records(
            Settings(redis_url=server.url, prefix=PREFIX), args.records
        )
        memory = client.info("memory")["used_memory_human"]
        took_s = time.perf_counter() - started
        print(f"seeded {args.jobs:,} waiting jobs in {args.queues} queues, {args.records:,} with"
              f" records, in {took_s:.1f}s; Redis uses {memory}")  # fmt: skip
        rows = asyncio.run(run(args, server.url, job_id, workflow_id))
        client.close()
    finally:
        server.cleanup()
    print(f"\n{'page':<48} {'median ms':>10} {'p95 ms':>8} {'Redis cmds':>11} {'Redis us':>9}")
    for r in rows:
        print(f"{r['page']:<48} {r['median_ms']:>10.1f} {r['p95_ms']:>8.1f}"
              f" {r['commands']:>11.0f} {r['redis_us']:>9.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
