"""One pickup, end to end, in monotonic stamps: where an idle worker's latency goes.

    python benchmarks/pickup_trace.py --samples 300

A private redis-server; an idle :class:`~taskforge.worker.Worker` (``-c 10``) in a child
process; this process sends one job at a time after ``--gap-ms`` of idle (as ``bench.py``'s
latency figure does). ``time.monotonic`` is system-wide on Linux, so stamps taken in the two
processes compare. Per job, from the producer's call (t0):

* ``sent``     ``.delay()`` returned (the enqueue script, its wake marker and PUBLISH);
* ``reply``    the worker's blocked ``BZPOPMIN`` + fetch pipeline answered and parsed (the
               fetcher holds the leased job);
* ``task``     the job's asyncio task took its first step;
* ``body``     the task's first line.

The same run measures the floor on this host: a bare ``PING`` after the same idle gap, and a
raw pickup (``LPUSH`` from here, a child blocked in redis-py's ``BLPOP`` stamps the reply).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import redis

PREFIX = "pt"
STAMPS = PREFIX + ":stamps"
RAW, RAW_STAMPS = PREFIX + ":raw", PREFIX + ":raw-stamps"


def serve(url: str) -> None:
    """The worker's side: an idle worker whose fetcher and runner stamp each pickup."""
    import anyio

    from taskforge import Settings, Taskforge, current_job
    from taskforge.worker import Worker
    from taskforge.worker.fetcher import Fetcher
    from taskforge.worker.runner import JobRunner

    app = Taskforge(Settings(redis_url=url, prefix=PREFIX))
    marks: dict[str, float] = {}
    accept, run_job = Fetcher._accept, JobRunner._run_job

    async def stamped_accept(self: Fetcher, queue: str, request: str, fetched: Any) -> int:
        if fetched.jobs:  # not the empty fetch after each job
            marks.setdefault("reply", time.monotonic())
        return await accept(self, queue, request, fetched)

    async def stamped_run_job(self: JobRunner, *args: Any) -> None:
        marks.setdefault("task", time.monotonic())
        await run_job(self, *args)

    Fetcher._accept = stamped_accept  # type: ignore[method-assign]
    JobRunner._run_job = stamped_run_job  # type: ignore[method-assign]

    @app.task(name="trace.stamp", max_retries=0)
    async def stamp() -> None:
        """Report this pickup's stamps."""
        body = time.monotonic()
        seen = {**marks, "body": body}
        marks.clear()
        await current_job().redis.rpush(STAMPS, json.dumps(seen))

    worker = Worker(app.settings, app.registry, concurrency=10)
    anyio.run(worker.run)


def raw_serve(url: str) -> None:
    """The floor: a bare redis-py consumer blocked in BLPOP, stamping each reply."""
    client = redis.Redis.from_url(url)
    while True:
        if client.blpop([RAW], timeout=1) is not None:
            client.rpush(RAW_STAMPS, repr(time.monotonic()))


def _child(mode: str, url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, mode, "--url", url])


def trace(url: str, samples: int, gap_s: float) -> dict[str, list[float]]:
    """Send ``samples`` jobs one at a time; each pickup's stamps relative to the call (ms)."""
    from taskforge import Settings, Taskforge

    app = Taskforge(Settings(redis_url=url, prefix=PREFIX))

    @app.task(name="trace.stamp", max_retries=0)
    async def stamp() -> None:
        """Stands for the worker's task of that name."""

    client = redis.Redis.from_url(url)
    stamp.delay()  # connect, load the script; also waits for the worker below
    client.blpop([STAMPS], timeout=60)
    # Every command's own time in Redis, for the scripts' share (a private server: ours).
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    client.slowlog_reset()
    rows: dict[str, list[float]] = {"sent": [], "reply": [], "task": [], "body": []}
    for _ in range(samples):
        time.sleep(gap_s)
        t0 = time.monotonic()
        stamp.delay()
        sent = time.monotonic()
        reply = client.blpop([STAMPS], timeout=30)
        if reply is None:
            raise SystemExit("no stamp came back in 30 s")
        marks = json.loads(reply[1])
        rows["sent"].append(sent - t0)
        for name in ("reply", "task", "body"):
            rows[name].append(marks[name] - t0)
    rows.update(_server_times(client))
    return rows


def _server_times(client: redis.Redis) -> dict[str, list[float]]:
    """Redis' own time per top-level command of the traced pickups (SLOWLOG at 0 µs); a
    script's inner commands are logged too, and left out here."""
    from taskforge.protocol.scripts import SCRIPTS

    names = {SCRIPTS.sha(n): n for n in SCRIPTS.sources}
    by_command: dict[str, list[float]] = {}
    for entry in client.slowlog_get(100_000):
        words = [w.decode() if isinstance(w, bytes) else str(w) for w in entry["command"].split()]
        if not words or words[0].lower() not in ("evalsha", "bzpopmin"):
            continue
        name = words[0].lower()
        if name == "evalsha" and len(words) > 1:
            name = f"{names.get(words[1], words[1][:8])}.lua"
        by_command.setdefault(f"in Redis: {name}", []).append(entry["duration"] / 1e6)
    return {k: v for k, v in by_command.items() if len(v) >= 50}


def floor(url: str, samples: int, gap_s: float) -> dict[str, list[float]]:
    """A bare PING after the same idle gap, and a raw LPUSH → BLPOP pickup."""
    client = redis.Redis.from_url(url)
    client.ping()
    rows: dict[str, list[float]] = {"ping": [], "raw pickup": []}
    for _ in range(samples):
        time.sleep(gap_s)
        t0 = time.monotonic()
        client.ping()
        rows["ping"].append(time.monotonic() - t0)
        time.sleep(gap_s)
        t0 = time.monotonic()
        client.lpush(RAW, "x")
        reply = client.blpop([RAW_STAMPS], timeout=30)
        if reply is None:
            raise SystemExit("the raw consumer did not answer in 30 s")
        rows["raw pickup"].append(float(reply[1]) - t0)
    return rows


def _line(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {name} | {statistics.median(ms):.3f} | {p99:.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("mode", nargs="?", choices=("serve", "raw"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=15.0)
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.url)
        return
    if args.mode == "raw":
        raw_serve(args.url)
        return
    from bench import private_redis

    with private_redis() as url:
        children = [_child("serve", url), _child("raw", url)]
        try:
            rows = trace(url, args.samples, args.gap_ms / 1000)
            rows.update(floor(url, args.samples, args.gap_ms / 1000))
        finally:
            for child in children:
                os.kill(child.pid, signal.SIGTERM)
                child.wait(10)
    print(f"{args.samples} samples, {args.gap_ms:g} ms idle before each; ms after the call")
    print("| stamp | p50 ms | p99 ms |\n|---|---|---|")
    for name, values in rows.items():
        print(_line(name, values))


if __name__ == "__main__":
    main()
