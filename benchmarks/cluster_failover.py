"""Cluster failover under load: kill -9 a primary of a 3-primary Redis Cluster mid-drain.

    python benchmarks/cluster_failover.py                  # 2,000 jobs per mode, both modes
    python benchmarks/cluster_failover.py --jobs 5000 --rounds 3

For each mode (plain enqueue, then ``durable_enqueue``: ``WAIT 1`` after each enqueue) it builds
a fresh cluster of 3 primaries with one replica each (``cluster-node-timeout`` 2 s), starts
``--workers`` real ``taskforge worker`` processes running :mod:`tests.support.chaos_tasks` on a
queue in ``--partitions`` partitions (spread over the three primaries), and a producer thread
that sends jobs with fixed ids in small batches, re-sending a batch with the same ids after any
error until it is acknowledged. ``--kill-at`` seconds in, the primary serving partition 0 is
SIGKILLed; its replica takes over, and the killed node is restarted once it has (it rejoins as
the new primary's replica: until then a durable enqueue to that slot has no replica to wait for
and raises ``NotReplicatedError``, and the producer re-sends). The ledger (one fsync'd line per
job body, outside Redis) then says what was **lost** (acknowledged, never ran) and
**duplicated** (ran twice; allowed for jobs in flight on the dead primary, whose outcomes died
with it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis
import redis.cluster

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from taskforge import BrokerError, Settings  # noqa: E402
from taskforge.client import Client  # noqa: E402
from taskforge.partition import Partitioned  # noqa: E402
from taskforge.protocol.keys import QueueKeys  # noqa: E402
from taskforge.task import Call, TaskOptions  # noqa: E402
from tests.support.cluster import LocalCluster, wait_writable  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

QUEUE = "fo"
PREFIX = "fo"


@dataclass
class Result:
    """One failover run."""

    mode: str
    sent: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    in_flight_at_kill: int = 0
    failover_s: float = 0.0
    producer_blocked_s: float = 0.0
    resent_batches: int = 0
    not_replicated: int = 0
    wall_s: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)

    def row(self) -> str:
        cells = [
            self.mode, f"{self.sent:,}", f"{self.acknowledged:,}", f"**{self.lost}**",
            f"{self.duplicated} (of {self.in_flight_at_kill})", f"{self.failover_s:.1f} s",
            f"{self.producer_blocked_s:.1f} s", str(self.resent_batches),
            str(self.not_replicated), f"{self.wall_s:.0f} s",
        ]  # fmt: skip
        return "| " + " | ".join(cells) + " |"


HEADER = (
    "| mode | jobs sent | acknowledged | lost | ran twice (of in flight on the killed primary) "
    "| failover | producer blocked | batches re-sent | NotReplicatedError | wall |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


class _Producer(threading.Thread):
    """Sends ``calls`` in batches; a batch is re-sent with the same ids until acknowledged."""

    def __init__(self, client: Client, calls: list[Call], batch: int, every_s: float):
        super().__init__(daemon=True)
        self.client, self.calls, self.batch, self.every_s = client, calls, batch, every_s
        self.acked: set[str] = set()
        self.resent = 0
        self.not_replicated = 0
        self.longest_block_s = 0.0

    def run(self) -> None:
        for i in range(0, len(self.calls), self.batch):
            chunk = self.calls[i : i + self.batch]
            started = time.monotonic()
            deadline = started + 120
            while True:
                try:
                    handles = self.client.submit(chunk)
                    break
                except BrokerError as exc:
                    self.resent += 1
                    self.not_replicated += type(exc).__name__ == "NotReplicatedError"
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            self.longest_block_s = max(self.longest_block_s, time.monotonic() - started)
            self.acked.update(h.id for h in handles)
            time.sleep(self.every_s)


def run_mode(durable: bool, args: argparse.Namespace) -> Result:
    """One fresh cluster, workers, producer, one primary SIGKILLed mid-drain."""
    result = Result("`TASKFORGE_DURABLE=1` (WAIT 1)" if durable else "plain enqueue")
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tf-failover-"))
    ledger = work / "ledger"
    ledger.touch()
    cluster = LocalCluster(primaries=3, replicas=1).start()
    procs: list[subprocess.Popen[bytes]] = []
    hot = Partitioned(QUEUE, args.partitions)
    try:
        settings = Settings(
            redis_url=cluster.url, prefix=PREFIX, durable_enqueue=durable, lease_s=args.lease,
            socket_timeout_s=2, socket_connect_timeout_s=1,
        )  # fmt: skip
        ctl = redis.cluster.RedisCluster(
            host="127.0.0.1", port=cluster.servers[0].port, decode_responses=True
        )
        procs = _start_workers(cluster.url, hot, ledger, work, args)
        calls = _calls(hot, args.jobs)
        result.sent = len(calls)
        client = Client(settings)
        producer = _Producer(client, calls, batch=20, every_s=args.produce_s * 20 / args.jobs)
        producer.start()
        time.sleep(args.kill_at)
        victim = _primary_of(ctl, cluster, QueueKeys(PREFIX, hot.queues[0]).inflight)
        result.in_flight_at_kill = _in_flight_on(ctl, hot, victim.port)
        killed_at = time.monotonic()
        victim.kill()
        probe = f"{PREFIX}:{{{hot.queues[0]}}}:failover-probe"
        result.failover_s = wait_writable(cluster, victim.port, probe, killed_at)
        victim.start()  # back as a replica of the promoted one, as an operator would restart it
        producer.join(180)
        _wait_drained(ctl, hot, ledger, deadline_s=120)
        ran = _ledger(ledger)
        result.acknowledged = len(producer.acked)
        result.lost = sum(1 for job_id in producer.acked if ran[job_id] == 0)
        result.duplicated = sum(1 for n in ran.values() if n > 1)
        result.producer_blocked_s = producer.longest_block_s
        result.resent_batches = producer.resent
        result.not_replicated = producer.not_replicated
        client.close()
        ctl.close()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        cluster.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    result.wall_s = time.monotonic() - t0
    return result


def _calls(hot: Partitioned, n: int) -> list[Call]:
    calls = [
        Call("chaos.work", (), {"ms": 10}, TaskOptions(name="chaos.work", job_id=f"j{i:07d}"))
        for i in range(n)
    ]
    return hot.spread(calls)


def _start_workers(
    url: str, hot: Partitioned, ledger: Path, work: Path, args: argparse.Namespace
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ, "REDIS_URL": url, "TASKFORGE_PREFIX": PREFIX, "CHAOS_LEDGER": str(ledger),
        "TASKFORGE_LEASE": str(args.lease), "REDIS_SOCKET_TIMEOUT": "2",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }  # fmt: skip
    queues = [a for q in hot.queues for a in ("-Q", q)]
    cmd = [sys.executable, "-m", "taskforge.cli", "worker", "tests.support.chaos_tasks:app"]
    cmd += queues
    cmd += ["-c", str(args.concurrency)]
    procs = []
    for i in range(args.workers):
        with open(work / f"worker-{i}.log", "wb") as log:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
    deadline = time.monotonic() + 60
    while not all(b" up: " in (work / f"worker-{i}.log").read_bytes() for i in range(len(procs))):
        if time.monotonic() > deadline:
            raise TimeoutError("workers did not start within 60 s")
        time.sleep(0.05)
    return procs


def _primary_of(ctl: redis.cluster.RedisCluster, cluster: LocalCluster, key: str) -> RedisServer:
    port = ctl.get_node_from_key(key).port  # type: ignore[no-untyped-call]
    return next(s for s in cluster.servers if s.port == port)


def _in_flight_on(ctl: redis.cluster.RedisCluster, hot: Partitioned, port: int) -> int:
    total = 0
    for queue in hot.queues:
        key = QueueKeys(PREFIX, queue).inflight
        if ctl.get_node_from_key(key).port == port:  # type: ignore[no-untyped-call]
            total += int(ctl.zcard(key))  # type: ignore[arg-type]
    return total


def _wait_drained(
    ctl: redis.cluster.RedisCluster, hot: Partitioned, ledger: Path, deadline_s: float
) -> None:
    end = time.monotonic() + deadline_s
    quiet = 0
    last = -1
    while time.monotonic() < end:
        try:
            left = 0
            for queue in hot.queues:
                k = QueueKeys(PREFIX, queue)
                left += sum(int(ctl.llen(key)) for key in k.ready_lists)  # type: ignore[arg-type]
                left += int(ctl.zcard(k.scheduled)) + int(ctl.zcard(k.inflight))  # type: ignore[arg-type]
        except redis.RedisError:
            time.sleep(0.2)
            continue
        done = len(_ledger(ledger))
        quiet = quiet + 1 if left == 0 and done == last else 0
        last = done
        if quiet >= 10:
            return
        time.sleep(0.1)
    print("failover: not drained in time", file=sys.stderr)


def _ledger(path: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--jobs", type=int, default=2000, help="jobs per run")
    p.add_argument("--workers", type=int, default=2, help="worker processes")
    p.add_argument("--concurrency", type=int, default=8, help="jobs at once per worker")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the queue")
    p.add_argument("--lease", type=float, default=2.0, help="lease, seconds")
    p.add_argument("--produce-s", type=float, default=6.0, help="seconds the producer spreads over")
    p.add_argument("--kill-at", type=float, default=2.0, help="seconds in: SIGKILL a primary")
    p.add_argument("--rounds", type=int, default=1, help="runs per mode")
    args = p.parse_args(argv)
    print(
        f"{args.jobs} jobs of 10 ms over {args.produce_s:g} s, {args.workers} workers x "
        f"{args.concurrency}, queue in {args.partitions} partitions, 3 primaries + 1 replica "
        f"each, primary of partition 0 SIGKILLed {args.kill_at:g} s in, cpus={os.cpu_count()}"
    )
    print(HEADER)
    for _ in range(args.rounds):
        for durable in (False, True):
            print(run_mode(durable, args).row(), flush=True)


if __name__ == "__main__":
    main()
