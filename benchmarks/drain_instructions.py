"""Worker instructions (or a profile) per drained job, in-process, load-independent.

    python benchmarks/drain_instructions.py --n 2000 --body noop      # callgrind; a few minutes
    python benchmarks/drain_instructions.py --n 20000 --profile pyinstrument --body incr
    python benchmarks/drain_instructions.py --n 2000 --body incr_lent  # current_job().redis

Fills a private redis-server with ``N`` jobs (outside the measured process), then a burst
:class:`~taskforge.worker.Worker` at ``-c`` drains them. Under ``valgrind --tool=callgrind``
(``PYTHONHASHSEED=0``) the same drain runs twice, with N jobs and with none; the difference of
the two processes' instruction totals over N is the worker's cost of one job, interpreter
included, whatever the host's load. ``--profile`` runs the drain once under pyinstrument
(or cProfile) instead and prints where the time goes.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import redis.asyncio

from taskforge import Settings, Taskforge, current_job
from taskforge.worker import Worker

PREFIX = "dr"


def _app(url: str) -> tuple[Taskforge, dict[str, Any]]:
    app = Taskforge(Settings(redis_url=url, prefix=PREFIX))
    counter: dict[str, Any] = {}

    @app.task(name="bench.noop", max_retries=0)
    async def noop() -> None:
        """Does nothing."""

    @app.task(name="bench.incr", max_retries=0)
    async def incr() -> None:
        """One Redis INCR."""
        client = counter.get("client")
        if client is None:
            client = counter["client"] = redis.asyncio.Redis.from_url(url)
        await client.incr(PREFIX + ":counter")

    @app.task(name="bench.incr_lent", max_retries=0)
    async def incr_lent() -> None:
        """One Redis INCR through the worker's client (``current_job().redis``)."""
        await current_job().redis.incr(PREFIX + ":counter")

    return app, {"noop": noop, "incr": incr, "incr_lent": incr_lent}


def fill(url: str, n: int, body: str) -> None:
    """Queue ``n`` jobs of ``body`` (bulk)."""
    app, tasks = _app(url)
    for done in range(0, n, 1000):
        app.enqueue_many([tasks[body].s() for _ in range(min(1000, n - done))])


def drain(url: str, concurrency: int, profile: str) -> int:
    """Drain the queue in burst mode; the number of jobs run."""
    app, _ = _app(url)
    worker = Worker(app.settings, app.registry, concurrency=concurrency, burst=True)
    if profile == "pyinstrument":
        from pyinstrument import Profiler

        with Profiler(interval=0.0005) as prof:
            stats = anyio.run(worker.run)
        print(prof.output_text(unicode=False, show_all=False))
    elif profile == "cprofile":
        import cProfile
        import pstats

        with cProfile.Profile() as cprof:
            stats = anyio.run(worker.run)
        pstats.Stats(cprof).sort_stats("tottime").print_stats(45)
    else:
        stats = anyio.run(worker.run)
    return stats.processed


def _instructions(url: str, concurrency: int) -> int:
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           __file__, "--inner", "--url", url, "-c", str(concurrency)]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stderr
    found = re.search(r"Collected : (\d+)", out)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's output:\n{out}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("-c", "--concurrency", type=int, default=100)
    parser.add_argument("--body", choices=("noop", "incr", "incr_lent"), default="noop")
    parser.add_argument("--profile", choices=("pyinstrument", "cprofile"), default="")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        drain(args.url, args.concurrency, "")
        return
    from bench import private_redis

    with private_redis() as url:
        if args.profile:
            fill(url, args.n, args.body)
            print(f"drained {drain(url, args.concurrency, args.profile)} jobs")
            return
        empty = _instructions(url, args.concurrency)
        fill(url, args.n, args.body)
        full = _instructions(url, args.concurrency)
        per_job = (full - empty) / args.n
        print(f"{args.body} -c {args.concurrency}: {per_job:,.0f} worker instructions per job "
              f"(N = {args.n:,})")  # fmt: skip


if __name__ == "__main__":
    main()
