"""The contract every system's benchmark runner follows (stdlib only: peers run in other venvs).

``bench.py`` starts one runner per measurement as a subprocess::

    python benchmarks/<runner>.py <workload> [options]

and reads one ``RESULT {json}`` line from its stdout. Workloads:

* ``enqueue --mode sync|async|bulk --n N [--kind async|sync]``: enqueue N no-op jobs, timed.
* ``fill --n N [--kind async|sync] [--body B]``: queue N jobs for a drain, by the fastest means
  the system has (not a reported figure; the driver reads Redis' memory around it).
* ``drain --n N --concurrency C [--kind async|sync] [--body B]``: one worker process runs the
  jobs already queued until all N have run (burst mode where the system has one, else until the
  task bodies have counted N in the process). Every body stamps ``time.monotonic()`` when it
  starts and ends (:class:`Span`, in the worker process): the drain figure is N / (last body's
  end - first body's start), and the worker's construction -> first body is its own figure.
  ``--stop-after`` (``backlog.py``): the worker stops after N bodies, out of a bigger backlog;
  ``--queues K`` (taskforge): jobs spread over K queues, one worker serving them all.
* ``serve --concurrency C``: an idle worker for the latency and startup workloads, until SIGTERM.
* ``latency --samples S``: enqueue one ``stamp`` job at a time; the task pushes its start time
  (``time.monotonic()``, system-wide on Linux) to ``STAMP_KEY``; the runner reports the gaps.
* ``kick``: enqueue one ``stamp`` job (the startup workload: the driver then starts ``serve``
  and times the gap from the process's start to the stamp).

Job bodies (``--body``), the same for every system: ``noop``; ``incr`` (one Redis ``INCR`` with
the system's own client kind: asyncio for asyncio workers); ``sleep`` (``asyncio.sleep(0.001)``,
``time.sleep(0.001)`` in thread workers); ``cpu`` (1 ms of the thread's own CPU time, so a
loaded machine does not shorten it).

Runners take the Redis URL from ``REDIS_URL`` and a key namespace from ``BENCH_PREFIX``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: Where ``stamp`` tasks push their start time (a list; the latency runner BLPOPs it).
STAMP_SUFFIX = ":stamps"
#: Pause between latency samples, so the worker is idle (blocked) when the next job arrives.
IDLE_GAP_S = 0.015
#: The job bodies a drain can run (see the module docstring).
BODIES = ("noop", "incr", "sleep", "cpu")
#: What the ``sleep`` body waits and the ``cpu`` body burns, s.
BODY_S = 0.001


def burn_cpu(seconds: float = BODY_S) -> None:
    """Spin until this thread has used ``seconds`` of CPU (not wall) time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def counter_key() -> str:
    """The key the ``incr`` body increments."""
    return prefix() + ":incr"


class Span:
    """The bodies a worker process ran: first start, last end, and the CPU between them.

    Every job body calls :meth:`begin` first and :meth:`end` last (:func:`run_body`,
    :func:`arun_body`), whatever the system, so every drain is timed the same way: from the first
    body's start to the last body's end (``time.monotonic()``, system-wide on Linux). ``done`` is
    set at ``n`` ends: systems without a burst mode stop there (before they record the last job as
    finished, which favours them slightly). Costs two clock reads and a lock per job.
    """

    def __init__(self, n: int):
        self.n = n
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first = self.cpu_last = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()

    def begin(self) -> None:
        """A body starts."""
        if self.first is None:
            with self._lock:
                if self.first is None:
                    self.cpu_first, self.first = cpu_s(), time.monotonic()

    def end(self) -> None:
        """A body ended."""
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.last = now
            if self.count == self.n:
                self.cpu_last = cpu_s()
                self.done.set()


#: The drain running in this process, if any (the bodies report to it).
_SPANS: list[Span] = []


def track(n: int) -> Span:
    """Start counting this process's job bodies (a drain of ``n`` jobs)."""
    span = Span(n)
    _SPANS[:] = [span]
    return span


def run_body(body: str, client: Any) -> None:
    """One job body in a thread (``client``: a blocking redis-py client), reported to the span."""
    span = _SPANS[0] if _SPANS else None
    if span:
        span.begin()
    if body == "incr":
        client.incr(counter_key())
    elif body == "sleep":
        time.sleep(BODY_S)
    elif body == "cpu":
        burn_cpu()
    if span:
        span.end()


async def arun_body(body: str, client: Any) -> None:
    """One job body on an event loop (``client``: redis.asyncio), reported to the span."""
    span = _SPANS[0] if _SPANS else None
    if span:
        span.begin()
    if body == "incr":
        await client.incr(counter_key())
    elif body == "sleep":
        await asyncio.sleep(BODY_S)
    elif body == "cpu":
        burn_cpu()
    if span:
        span.end()


def stamp_now(client: Any) -> None:
    """The ``stamp`` body: push this job's start time (monotonic) for the driver."""
    client.rpush(prefix() + STAMP_SUFFIX, repr(time.monotonic()))


async def astamp_now(client: Any) -> None:
    """:func:`stamp_now` with redis.asyncio."""
    await client.rpush(prefix() + STAMP_SUFFIX, repr(time.monotonic()))


def timed_calls(call: Callable[[], object], n: int) -> dict[str, Any]:
    """Call the producer once to warm it, then ``n`` times one after the other, each timed."""
    call()
    started, gaps = time.perf_counter(), []
    for _ in range(n):
        sent = time.perf_counter()
        call()
        gaps.append(time.perf_counter() - sent)
    return enqueue_result(gaps, time.perf_counter() - started)


async def atimed_calls(call: Callable[[], Awaitable[object]], n: int) -> dict[str, Any]:
    """:func:`timed_calls` for asyncio producers."""
    await call()
    started, gaps = time.perf_counter(), []
    for _ in range(n):
        sent = time.perf_counter()
        await call()
        gaps.append(time.perf_counter() - sent)
    return enqueue_result(gaps, time.perf_counter() - started)


def enqueue_result(gaps_s: list[float], seconds: float) -> dict[str, Any]:
    """The figures every one-call-at-a-time enqueue reports (``gaps_s``: each call's time)."""
    n = len(gaps_s)
    us = sorted(g * 1e6 for g in gaps_s)
    return {
        "jobs": n,
        "queued": n + 1,  # the warm-up call counts as queued work
        "seconds": seconds,
        "jobs_per_s": n / seconds,
        "p50_us": percentile(us, 50),
        "p99_us": percentile(us, 99),
    }


def drain_result(span: Span, started: float, cpu_started: float, **extra: Any) -> dict[str, Any]:
    """The figures every drain reports; ``started``: ``time.monotonic()`` before the worker was
    built, ``cpu_started``: :func:`cpu_s` then.

    ``seconds`` / ``jobs_per_s`` are first body's start -> last body's end; ``start_to_first_ms``
    is the worker's construction -> first body; ``cpu_us_per_job`` is the process's CPU between
    the first body's start and the N-th body's end, per job (``process_cpu_us_per_job``: from the
    worker's construction to now). A process whose bodies ran elsewhere (RQ's forking worker)
    has no span: its figures fall back to the worker's whole run (``span: worker``).
    """
    ended, cpu_ended = time.monotonic(), cpu_s()
    jobs, counted = span.count, extra.pop("jobs", None)  # counted: what a burst worker says
    result: dict[str, Any] = {"jobs": jobs, "total_s": ended - started}
    if jobs and span.first is not None and span.last is not None and span.last > span.first:
        seconds = span.last - span.first
        # The CPU up to the N-th body's end, over N (a stopping worker may run a few more).
        cpu_last, cpu_jobs = (span.cpu_last, span.n) if span.cpu_last else (cpu_ended, jobs)
        result.update(span="bodies", start_to_first_ms=(span.first - started) * 1000)
        result["cpu_us_per_job"] = (cpu_last - span.cpu_first) * 1e6 / cpu_jobs
    else:
        jobs = counted if counted is not None else jobs
        seconds = ended - started
        result.update(span="worker", jobs=jobs)
        result["cpu_us_per_job"] = (cpu_ended - cpu_started) * 1e6 / max(1, jobs)
    result.update(seconds=seconds, jobs_per_s=result["jobs"] / seconds if seconds else None)
    result["process_cpu_us_per_job"] = (cpu_ended - cpu_started) * 1e6 / max(1, result["jobs"])
    result["peak_rss_mib"] = peak_rss_mib()
    return {**result, **extra}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The runner command line (see the module docstring)."""
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="workload", required=True)
    e = sub.add_parser("enqueue")
    e.add_argument("--mode", choices=["sync", "async", "bulk"], required=True)
    e.add_argument("--n", type=int, required=True)
    e.add_argument("--kind", choices=["async", "sync"], default="async")
    e.add_argument("--queues", type=int, default=0, help="spread over K queues (bulk; 0: one)")
    f = sub.add_parser("fill")
    f.add_argument("--queues", type=int, default=0)
    f.add_argument("--n", type=int, required=True)
    f.add_argument("--kind", choices=["async", "sync"], default="async")
    f.add_argument("--body", choices=BODIES, default="noop")
    d = sub.add_parser("drain")
    d.add_argument("--n", type=int, required=True)
    d.add_argument("--concurrency", type=int, default=50)
    d.add_argument("--kind", choices=["async", "sync"], default="async")
    d.add_argument("--body", choices=BODIES, default="noop")
    d.add_argument("--count-round-trips", action="store_true")
    d.add_argument("--uvloop", action="store_true")
    d.add_argument("--queues", type=int, default=0, help="one worker serving K queues")
    stop_help = "no burst mode: stop after N bodies (a slice of a bigger backlog)"
    d.add_argument("--stop-after", action="store_true", help=stop_help)
    s = sub.add_parser("serve")
    s.add_argument("--concurrency", type=int, default=50)
    s.add_argument("--uvloop", action="store_true")
    lat = sub.add_parser("latency")
    lat.add_argument("--samples", type=int, default=500)
    sub.add_parser("kick")
    return p.parse_args(argv)


def prefix() -> str:
    """This run's key namespace (each measurement gets a fresh one)."""
    return os.environ.get("BENCH_PREFIX", "bench")


def redis_url() -> str:
    """The Redis the benchmark runs against."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB.

    ``VmHWM`` of ``/proc/self/status``: the high-water mark of this process's own memory map.
    Not ``ru_maxrss``: Linux carries that across ``execve``, so a runner the driver forked would
    report at least the driver's own RSS (~36 MiB), whatever the runner used.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
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


_NO_PICKUP = "latency: no job started within 30 s; is the worker running?"


def measure_pickup(
    send: Callable[[], object], wait: Callable[..., Any], samples: int, warmup: int
) -> dict[str, Any]:
    """Send one stamp job at a time to an idle worker; the gaps from ``send()`` to its start.

    ``wait`` is the client's ``blpop``; the stamp task pushes its start time (monotonic) onto
    ``prefix() + STAMP_SUFFIX``. The first ``warmup`` samples are dropped.
    """
    key, gaps = prefix() + STAMP_SUFFIX, []
    for i in range(warmup + samples):
        time.sleep(IDLE_GAP_S)
        sent = time.monotonic()
        send()
        reply = wait([key], timeout=30)
        if reply is None:
            raise SystemExit(_NO_PICKUP)
        if i >= warmup:
            gaps.append(float(reply[1]) - sent)
    return latency_result(gaps)


async def ameasure_pickup(
    send: Callable[[], Awaitable[object]],
    wait: Callable[..., Awaitable[Any]],
    samples: int,
    warmup: int,
) -> dict[str, Any]:
    """:func:`measure_pickup` for asyncio producers."""
    key, gaps = prefix() + STAMP_SUFFIX, []
    for i in range(warmup + samples):
        await asyncio.sleep(IDLE_GAP_S)
        sent = time.monotonic()
        await send()
        reply = await wait([key], timeout=30)
        if reply is None:
            raise SystemExit(_NO_PICKUP)
        if i >= warmup:
            gaps.append(float(reply[1]) - sent)
    return latency_result(gaps)


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
