"""Scale-out benchmark: jobs/s on one Redis vs a 3-primary Redis Cluster, and the cost of WAIT.

    python benchmarks/cluster_bench.py                     # defaults: 6,000 jobs, 3 workers
    python benchmarks/cluster_bench.py --n 20000 --partitions 12 --rounds 3

For each deployment (a private single ``redis-server``, then a 3-primary cluster built from
``redis-server --cluster-enabled yes`` and ``redis-cli --cluster create``) it starts ``--workers``
real ``taskforge worker`` processes draining a partitioned queue (``bench:0`` ..
``bench:<partitions-1>``, spread over the cluster's slots), waits for their heartbeats, then sends
``--n`` no-op jobs in bulk (``enqueue_many``, round robin over the partitions), all due at one
instant after the producer is done, and times the drain from that instant to the last ack.

The durable part sends ``--durable-n`` jobs one at a time to a primary with one replica (behind
Sentinel), with and without ``TASKFORGE_DURABLE`` (``WAIT 1`` after each enqueue).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT)]

from taskforge import Settings, Taskforge, default_app, task  # noqa: E402
from taskforge.partition import Partitioned  # noqa: E402
from taskforge.protocol.brokers import SyncBroker  # noqa: E402
from tests.support.cluster import LocalCluster, LocalSentinel  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

QUEUE = "bench"


@task(name="bench.noop")
async def noop(n: int) -> None:
    """The benchmarked job: nothing, so the figures measure the queue."""


@contextmanager
def deployment(kind: str) -> Iterator[str]:
    """A fresh deployment of ``kind`` ("single" or "cluster"); yields its URL."""
    if kind == "single":
        server = RedisServer().start()
        try:
            yield server.url
        finally:
            server.cleanup()
        return
    cluster = LocalCluster(primaries=3).start()
    try:
        yield cluster.url
    finally:
        cluster.cleanup()


def start_workers(url: str, prefix: str, args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "REDIS_URL": url, "TASKFORGE_PREFIX": prefix}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    queues = [a for q in Partitioned(QUEUE, args.partitions).queues for a in ("-Q", q)]
    cmd = [sys.executable, "-m", "taskforge.cli", "worker", "benchmarks.cluster_bench", *queues]
    cmd += ["-c", str(args.concurrency), "--log-level", "warning"]
    return [
        subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        for _ in range(args.workers)
    ]


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s}s")
        time.sleep(0.02)


def drain_round(url: str, args: argparse.Namespace, round_no: int) -> tuple[float, float]:
    """One timed round: (drain jobs/s, producer bulk-enqueue jobs/s)."""
    prefix = f"bench{round_no}-{os.getpid()}"
    settings = Settings(redis_url=url, prefix=prefix)
    app = Taskforge(settings, registry=default_app.registry)
    broker = SyncBroker(settings)
    hot = Partitioned(QUEUE, args.partitions)
    procs = start_workers(url, prefix, args)
    try:
        ops = broker.ops
        wait_for(lambda: len(broker.run(ops.workers())) == args.workers, 30, "workers up")
        # Every job falls due at one instant after the producer is done, so the drain is timed
        # on its own (the idle workers wake for it: their block ends at the next due time).
        due = datetime.now(UTC) + timedelta(seconds=2 + args.n / 2000)
        started = time.perf_counter()
        for lo in range(0, args.n, 500):
            calls = [replace(noop.s(i), run_at=due) for i in range(lo, min(args.n, lo + 500))]
            app.enqueue_many(hot.spread(calls))
        sent = time.perf_counter()

        def done() -> bool:
            counts = [broker.run(ops.counts(q)) for q in hot.queues]
            return sum(c.ready_total + c.scheduled + c.inflight for c in counts) == 0

        wait_for(lambda: datetime.now(UTC) >= due, 300, "jobs due")
        drain_started = time.perf_counter()
        wait_for(done, 300, "all jobs done")
        finished = time.perf_counter()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
        broker.close()
        app.client.close()
    return args.n / (finished - drain_started), args.n / (sent - started)


def durable_cost(args: argparse.Namespace) -> dict[str, float]:
    """One-at-a-time enqueue rate on a primary + replica, without and with WAIT 1."""
    rates: dict[str, float] = {}
    sentinel = LocalSentinel().start()
    try:
        for durable in (False, True):
            settings = Settings(redis_url=sentinel.url, prefix=f"dur{durable:d}")
            settings = settings.model_copy(update={"durable_enqueue": durable})
            app = Taskforge(settings)
            app.submit([app.call("bench.noop", 0)])  # connect outside the timing
            started = time.perf_counter()
            for i in range(args.durable_n):
                app.submit([app.call("bench.noop", i)])
            rates["WAIT 1" if durable else "no WAIT"] = args.durable_n / (
                time.perf_counter() - started
            )
            app.client.close()
    finally:
        sentinel.cleanup()
    return rates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6000, help="jobs per round")
    p.add_argument("--workers", type=int, default=3, help="worker processes")
    p.add_argument("--concurrency", type=int, default=50, help="jobs at once per worker")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the bench queue")
    p.add_argument("--rounds", type=int, default=1, help="rounds per deployment (median shown)")
    p.add_argument("--durable-n", type=int, default=1000, help="one-at-a-time durable enqueues")
    args = p.parse_args(argv)
    print(
        f"{args.n} no-op jobs, {args.workers} workers x {args.concurrency}, "
        f"queue {QUEUE!r} in {args.partitions} partitions, cpus={os.cpu_count()}"
    )
    for kind in ("single", "cluster"):
        results = []
        for r in range(args.rounds):
            with deployment(kind) as url:
                results.append(drain_round(url, args, r))
        e2e = statistics.median(x for x, _ in results)
        enq = statistics.median(y for _, y in results)
        label = "1 node     " if kind == "single" else "3 primaries"
        print(f"{label}: drain {e2e:7.0f} jobs/s    bulk enqueue (1 producer) {enq:7.0f} jobs/s")
    if args.durable_n:
        for mode, rate in durable_cost(args).items():
            print(f"one-at-a-time enqueue, primary + 1 replica, {mode:7}: {rate:7.0f} jobs/s")


if __name__ == "__main__":
    main()
