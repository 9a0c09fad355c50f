"""The contract every system's benchmark runner follows (stdlib only: peers run in other venvs).

``bench.py`` starts one runner per measurement as a subprocess::

    python benchmarks/<runner>.py <workload> [options]

and reads one ``RESULT {json}`` line from its stdout. Workloads:

* ``enqueue --mode sync|async|bulk --n N [--kind async|sync]``: enqueue N no-op jobs, timed.
* ``fill --n N [--kind async|sync]``: queue N no-op jobs for a drain, by the fastest means the
  system has (not a reported figure).
* ``drain --n N --concurrency C [--kind async|sync]``: one worker process runs the jobs already
  queued until the queue is empty (burst mode); timed from the worker's start to its end.
* ``serve --concurrency C``: an idle worker for the latency workload, until SIGTERM.
* ``latency --samples S``: enqueue one ``stamp`` job at a time; the task pushes its start time
  (``time.monotonic()``, system-wide on Linux) to ``STAMP_KEY``; the runner reports the gaps.

Runners take the Redis URL from ``REDIS_URL`` and a key namespace from ``BENCH_PREFIX``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Callable
from typing import Any

#: Where ``stamp`` tasks push their start time (a list; the latency runner BLPOPs it).
STAMP_SUFFIX = ":stamps"
#: Pause between latency samples, so the worker is idle (blocked) when the next job arrives.
IDLE_GAP_S = 0.015


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner command line (see the module docstring)."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="workload", required=True)
    e = sub.add_parser("enqueue")
    e.add_argument("--mode", choices=["sync", "async", "bulk"], required=True)
    e.add_argument("--n", type=int, required=True)
    e.add_argument("--kind", choices=["async", "sync"], default="async")
    f = sub.add_parser("fill")
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--kind", choices=["async", "sync"], default="async")
    d = sub.add_parser("drain")
    d.add_argument("--n", type=int, required=True)
    d.add_argument("--concurrency", type=int, default=50)
    d.add_argument("--kind", choices=["async", "sync"], default="async")
    d.add_argument("--count-round-trips", action="store_true")
    d.add_argument("--uvloop", action="store_true")
    s = sub.add_parser("serve")
    s.add_argument("--concurrency", type=int, default=50)
    s.add_argument("--uvloop", action="store_true")
    lat = sub.add_parser("latency")
    lat.add_argument("--samples", type=int, default=500)
    return p.parse_args(argv)


def prefix() -> str:
    """This run's key namespace (each measurement gets a fresh one)."""
    return os.environ.get("BENCH_PREFIX", "bench")


def redis_url() -> str:
    """The Redis the benchmark runs against."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU time (user + system) this process has used, s: less noisy than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(result: dict[str, Any]) -> None:
    """Hand one result to the driver."""
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


def count_round_trips() -> Callable[[], int]:
    """Count every request redis-py writes to a socket (a pipeline is one); returns a reader.

    The same redis-py entry point carries single commands, script calls and pipelines for all
    three systems, sync and asyncio alike, so the counts compare like with like.
    """
    import redis.asyncio.connection as aconn
    import redis.connection as sconn

    count = [0]
    sync_send = sconn.AbstractConnection.send_packed_command
    async_send = aconn.AbstractConnection.send_packed_command

    def counted_sync(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        sync_send(self, command, check_health)  # type: ignore[no-untyped-call]

    async def counted_async(self: Any, command: Any, check_health: bool = True) -> None:
        count[0] += 1
        await async_send(self, command, check_health)

    sconn.AbstractConnection.send_packed_command = counted_sync  # type: ignore[method-assign]
    aconn.AbstractConnection.send_packed_command = counted_async  # type: ignore[method-assign]
    return lambda: count[0]


def latency_result(gaps_s: list[float]) -> dict[str, Any]:
    """p50/p99/max of pickup gaps, in ms."""
    ms = sorted(g * 1000 for g in gaps_s)
    return {
        "samples": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1] if ms else None,
    }


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.4999))
    return sorted_values[min(rank, len(sorted_values)) - 1]
