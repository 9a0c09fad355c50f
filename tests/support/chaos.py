"""Chaos runner: real workers, a real Redis, faults on a schedule, and a ledger that tells truth.

Each scenario starts a private ``redis-server`` (AOF, ``appendfsync always``) and real
``taskforge worker`` processes running :mod:`tests.support.chaos_tasks`. Every job body appends
``(job_id, attempt, delivery, pid, start, end)`` to an fsync'd ledger file outside Redis. After
the faults, the checker compares the ledger with what was enqueued: an id that never ran is
**lost**, an id that ran twice is **duplicated** (allowed only for jobs that were in flight when
their worker was killed: at-least-once).

The scenarios are plain functions returning a :class:`Report`: the tests
(``tests/system/test_chaos.py``, ``test_network_faults.py``) call them directly, and
``python -m benchmarks.chaos`` runs them from the command line (the README's Reliability figures).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from taskforge import BrokerError, Settings
from taskforge.client import Client
from taskforge.job import JobPriority
from taskforge.protocol.keys import QueueKeys
from taskforge.protocol.records import STATUS_OF_LETTER
from taskforge.task import Call, TaskOptions
from tests.support.faultproxy import FaultProxy
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
FINAL = {"succeeded", "dead", "cancelled"}


def _word(letter: Any) -> str | None:
    """A record's status letter as its word (None: no record)."""
    return None if letter is None else STATUS_OF_LETTER[str(letter)].value


QUEUE = "default"


@dataclass
class Report:
    """What one scenario did and what the checker found."""

    scenario: str
    jobs: int = 0
    kills: int = 0
    redis_restarts: int = 0
    client_kills: int = 0
    lost: int = 0
    duplicated: int = 0
    in_flight_at_kills: int = 0
    max_recovery_s: float | None = None
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> list[str]:
        dup = f"{self.duplicated} (of {self.in_flight_at_kills})"
        note = ", ".join(f"{k}={v}" for k, v in self.notes.items())
        rec = "-" if self.max_recovery_s is None else f"{self.max_recovery_s:.2f}s"
        return [
            self.scenario, str(self.jobs), str(self.kills), str(self.redis_restarts),
            str(self.lost), dup, rec, f"{self.wall_s:.1f}s", note,
        ]  # fmt: skip


HEADER = ["scenario", "jobs", "kills", "redis restarts", "lost", "duplicated (in flight at kills)"]
HEADER += ["max recovery", "wall", "notes"]


def table(reports: Sequence[Report]) -> str:
    """A Markdown table of reports (the README's Reliability table)."""
    rows = [HEADER, ["---"] * len(HEADER), *(r.row() for r in reports)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# --------------------------------------------------------------------------- the harness


class Chaos:
    """One private Redis, a set of worker processes, a ledger, and the checker."""

    def __init__(
        self,
        *,
        lease_s: float = 2.0,
        max_deliveries: int = 5,
        redis_args: Sequence[str] = (),
        worker_env: dict[str, str] | None = None,
    ):
        self.dir = Path(tempfile.mkdtemp(prefix="tf-chaos-"))
        self.ledger = self.dir / "ledger"
        self.ledger.touch()
        aof = ["--appendonly", "yes", "--appendfsync", "always"]
        self.server = RedisServer(args=[*aof, *redis_args])
        self.lease_s = lease_s
        self.max_deliveries = max_deliveries
        self.worker_env = worker_env or {}
        self.prefix = "chaos"
        self.keys = QueueKeys(self.prefix, QUEUE)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.log_paths: dict[int, Path] = {}  # worker pid -> its log file
        self.respawn_concurrency = 4
        self.started_workers = 0
        self.ids: list[str] = []
        self._ledger_pos = 0
        self._ran: Counter[str] = Counter()
        self._first_start: dict[str, float] = {}
        self._producer: threading.Thread | None = None
        self.producer_errors = 0
        self.producer_existing = 0
        self.keep_dir = False  # kept (ledger, worker logs) when something went wrong

    # ---- lifecycle

    def __enter__(self) -> Chaos:
        self.server.start()
        self.settings = Settings(
            redis_url=self.server.url, prefix=self.prefix, lease_s=self.lease_s,
            max_deliveries=self.max_deliveries, socket_timeout_s=3, socket_connect_timeout_s=1,
        )  # fmt: skip
        self.client = Client(self.settings)
        self.ctl = redis.Redis(
            port=self.server.port, decode_responses=True, socket_timeout=3,
            socket_connect_timeout=1,
        )  # fmt: skip
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.client.close()
        self.ctl.close()
        self.server.cleanup()
        if exc_type is None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"chaos: ledger and worker logs kept in {self.dir}", file=sys.stderr)

    # ---- workers

    def start_worker(
        self, concurrency: int = 4, *, wait: bool = True, url: str | None = None
    ) -> subprocess.Popen[bytes]:
        """Start one ``taskforge worker`` process; with ``wait``, until it says it is up.

        ``url`` points it elsewhere than the server itself (a fault proxy in front of it).
        """
        self.started_workers += 1
        log_path = self.dir / f"worker-{self.started_workers}.log"
        env = {
            **os.environ, "REDIS_URL": url or self.server.url, "TASKFORGE_PREFIX": self.prefix,
            "TASKFORGE_LEASE": str(self.lease_s),
            "TASKFORGE_MAX_DELIVERIES": str(self.max_deliveries),
            "CHAOS_LEDGER": str(self.ledger),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            **self.worker_env,
        }  # fmt: skip
        cmd = [sys.executable, "-m", "taskforge.cli", "worker", "tests.support.chaos_tasks:app"]
        cmd += ["-c", str(concurrency), "--grace", "5"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.log_paths[proc.pid] = log_path
        self.workers.append(proc)
        if wait:
            wait_until(lambda: b" up: " in log_path.read_bytes(), 30, f"worker {proc.pid} up")
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        """Worker processes still running."""
        return [p for p in self.workers if p.poll() is None]

    def up(self) -> list[subprocess.Popen[bytes]]:
        """Worker processes running that said they are up (they may hold jobs)."""
        return [p for p in self.alive() if b" up: " in self.log_paths[p.pid].read_bytes()]

    def logs(self) -> str:
        """Everything the workers printed."""
        return "\n".join(path.read_text(errors="replace") for path in self.log_paths.values())

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> dict[str, int]:
        """SIGKILL a worker; returns the jobs it held in flight (id -> delivery number)."""
        proc.kill()
        proc.wait()
        return self.held_by(proc.pid)

    def held_by(self, pid: int) -> dict[str, int]:
        """Jobs in flight whose lease belongs to a worker process ``pid``."""
        ids: list[str] = self.ctl.zrange(self.keys.inflight, 0, -1)  # type: ignore[assignment]
        pipe = self.ctl.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "worker", "v")
        held: dict[str, int] = {}
        for job_id, (worker, deliveries) in zip(ids, pipe.execute(), strict=True):
            if worker and f":{pid}:" in worker:
                held[job_id] = int(deliveries or 0)
        return held

    def stop_workers(self) -> None:
        """SIGTERM every worker and wait for it (they hand back or finish their jobs)."""
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # ---- producing

    def calls(self, n: int, task: str = "chaos.work", **kwargs: Any) -> list[Call]:
        """``n`` calls with fresh, deterministic job ids (re-sending one writes nothing)."""
        start = len(self.ids)
        out = []
        for i in range(start, start + n):
            job_id = f"j{i:07d}"
            self.ids.append(job_id)
            opts = TaskOptions(name=task, job_id=job_id, max_retries=0)
            out.append(Call(task, (), dict(kwargs), opts))
        return out

    def enqueue(self, calls: Sequence[Call], deadline_s: float = 60.0) -> None:
        """Enqueue, retrying through outages with the same ids (so no job is enqueued twice)."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                handles = self.client.submit(calls)
            except BrokerError as exc:
                self.producer_errors += 1
                if self.producer_errors == 1 or time.monotonic() > deadline:
                    print(f"producer: {exc}; retrying", file=sys.stderr)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            self.producer_existing += sum(not h.created for h in handles)
            return

    def produce_in_background(self, calls: Sequence[Call], batch: int, every_s: float) -> None:
        """Enqueue ``calls`` in batches, one batch every ``every_s`` seconds, from a thread."""

        def run() -> None:
            for i in range(0, len(calls), batch):
                self.enqueue(calls[i : i + batch])
                time.sleep(every_s)

        self._producer = threading.Thread(target=run, daemon=True)
        self._producer.start()

    def producing(self) -> bool:
        return self._producer is not None and self._producer.is_alive()

    # ---- checking

    def read_ledger(self) -> Counter[str]:
        """Runs per job id so far (reads only what was appended since the last call)."""
        with open(self.ledger, "rb") as f:
            f.seek(self._ledger_pos)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self._ledger_pos += end
        for line in chunk[:end].decode().splitlines():
            parts = line.split()
            self._ran[parts[0]] += 1
            self._first_start.setdefault(parts[0], float(parts[4]))
        return self._ran

    def first_start(self, job_id: str) -> float | None:
        """Epoch seconds at which ``job_id`` first started (from the ledger)."""
        self.read_ledger()
        return self._first_start.get(job_id)

    def statuses(self, ids: Sequence[str] | None = None) -> dict[str, str | None]:
        """Status of each job's record (None: no record)."""
        ids = self.ids if ids is None else ids
        out: dict[str, str | None] = {}
        for i in range(0, len(ids), 5000):
            chunk = ids[i : i + 5000]
            pipe = self.ctl.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hget(self.keys.job(job_id), "s")
            out.update((i, _word(s)) for i, s in zip(chunk, pipe.execute(), strict=True))
        return out

    def settled(self) -> bool:
        """Everything enqueued has run or been buried, and nothing waits or runs."""
        if self.producing():
            return False
        ran = self.read_ledger()
        pipe = self.ctl.pipeline(transaction=False)
        for key in (*self.keys.ready_lists,):
            pipe.llen(key)
        pipe.zcard(self.keys.scheduled)
        pipe.zcard(self.keys.inflight)
        pipe.zcard(self.keys.dead)
        *depths, dead = pipe.execute()
        return bool(sum(depths) == 0 and len(ran) + dead >= len(self.ids))

    def check(self, report: Report, *, expect_dead: Sequence[str] = ()) -> Report:
        """Fill in lost/duplicated from the ledger and the records."""
        wait_until(self._final_or_down, 20, "final statuses")
        ran = self.read_ledger()
        statuses = self.statuses()
        report.jobs = len(self.ids)
        missing = [i for i in self.ids if ran[i] == 0 and i not in expect_dead]
        report.lost = len(missing)
        report.duplicated = sum(1 for i in self.ids if ran[i] > 1)
        counts = Counter(statuses.values())
        report.notes["succeeded"] = counts.get("succeeded", 0)
        if counts.get("dead"):
            report.notes["dead"] = counts["dead"]
        not_final = [i for i, s in statuses.items() if s not in FINAL]
        if not_final:
            report.notes["not_final"] = len(not_final)
        tracebacks = self.logs().count("Traceback")
        if tracebacks:
            report.notes["worker_tracebacks"] = tracebacks
        if missing or tracebacks:
            self.keep_dir = True
        if missing:
            report.notes["lost_ids"] = missing[:5]
            report.notes["lost_status"] = dict(Counter(statuses[i] for i in missing))
        return report

    def reclaimed(self) -> int:
        """Leases that expired and were reclaimed, over all jobs (the records' ``lost`` counts)."""
        total = 0
        for i in range(0, len(self.ids), 5000):
            pipe = self.ctl.pipeline(transaction=False)
            for job_id in self.ids[i : i + 5000]:
                pipe.hget(self.keys.job(job_id), "lost")
            total += sum(int(x or 0) for x in pipe.execute())
        return total

    def _final_or_down(self) -> bool:
        try:
            return all(s in FINAL for s in self.statuses().values())
        except redis.RedisError:
            return False

    def drive(
        self,
        deadline_s: float,
        tick: Callable[[float], None] = lambda t: None,
        *,
        respawn: int = 0,
    ) -> None:
        """Call ``tick(elapsed_s)`` every 50 ms until everything settled (or the deadline).

        ``respawn`` keeps that many workers alive (a crashed one is replaced).
        """
        start = time.monotonic()
        while True:
            elapsed = time.monotonic() - start
            tick(elapsed)
            for _ in range(respawn - len(self.alive())):
                self.start_worker(self.respawn_concurrency, wait=False)
            with contextlib.suppress(redis.RedisError):
                if self.settled():
                    return
            if elapsed > deadline_s:
                print(f"chaos: not settled after {deadline_s:.0f}s", file=sys.stderr)
                return
            time.sleep(0.05)


class Orphans:
    """Jobs whose worker was killed: when did each get delivered again (or finish)?"""

    def __init__(self, chaos: Chaos):
        self.chaos = chaos
        self.waiting: dict[str, tuple[int, float]] = {}
        self.total = 0
        self.recovery_s: list[float] = []

    def add(self, held: dict[str, int], killed_at: float) -> None:
        self.total += len(held)
        for job_id, delivery in held.items():
            self.waiting[job_id] = (delivery, killed_at)

    def all_recovered(self) -> bool:
        """Poll once; True when every orphan was delivered again or finished."""
        self.poll()
        return not self.waiting

    def poll(self) -> None:
        """Note the orphans that were delivered again (or finished) since the last poll."""
        if not self.waiting:
            return
        ids = list(self.waiting)
        pipe = self.chaos.ctl.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.chaos.keys.job(job_id), "v", "s")
        now = time.monotonic()
        for job_id, (deliveries, letter) in zip(ids, pipe.execute(), strict=True):
            status = _word(letter)
            delivery, killed_at = self.waiting[job_id]
            if int(deliveries or 0) > delivery or status in FINAL:
                self.recovery_s.append(now - killed_at)
                del self.waiting[job_id]


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; raise TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def rss_kib(pid: int) -> int:
    """Resident set size of a process, KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def cpu_burners(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU while the block runs."""
    code = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


# --------------------------------------------------------------------------- the scenarios


def kill_workers(
    jobs: int = 600, workers: int = 3, concurrency: int = 4, kill_every_s: float = 1.5,
    lease_s: float = 2.0, max_ms: int = 120, seed: int = 1,
) -> Report:  # fmt: skip
    """SIGKILL a random worker every ``kill_every_s`` (± 30 %) while jobs run; respawn it."""
    rnd = random.Random(seed)
    report = Report("kill_workers")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        chaos.respawn_concurrency = concurrency
        for _ in range(workers):
            chaos.start_worker(concurrency)
        calls = [c for _ in range(jobs) for c in chaos.calls(1, ms=rnd.randint(10, max_ms))]
        chaos.enqueue(calls)
        orphans = Orphans(chaos)
        next_kill = [kill_every_s]

        def tick(t: float) -> None:
            orphans.poll()
            if t >= next_kill[0] and chaos.up():
                victim = rnd.choice(chaos.up())
                orphans.add(chaos.kill_worker(victim), time.monotonic())
                report.kills += 1
                next_kill[0] = t + kill_every_s * rnd.uniform(0.7, 1.3)

        chaos.drive(60 + jobs * max_ms / 1000 / concurrency, tick, respawn=workers)
        wait_until(orphans.all_recovered, 30, "orphans recovered")
        chaos.check(report)
        report.in_flight_at_kills = orphans.total
        report.max_recovery_s = max(orphans.recovery_s, default=0.0)
        report.notes["lease"] = f"{lease_s}s"
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def redis_restarts(
    jobs: int = 600, workers: int = 2, concurrency: int = 4, restarts: int = 2,
    down_s: float = 1.0, lease_s: float = 5.0,
) -> Report:  # fmt: skip
    """kill -9 Redis and restart it (AOF) ``restarts`` times while producers and workers run."""
    report = Report("redis_restarts")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        for _ in range(workers):
            chaos.start_worker(concurrency)
        calls = chaos.calls(jobs, ms=20)
        chaos.produce_in_background(calls, batch=max(1, jobs // 40), every_s=0.1)
        recoveries: list[float] = []
        plan = [1.0 + i * 2.5 for i in range(restarts)]

        def tick(t: float) -> None:
            if plan and t >= plan[0]:
                plan.pop(0)
                chaos.server.kill()
                time.sleep(down_s)
                chaos.server.start()
                back = time.time()
                report.redis_restarts += 1
                done_before = len(chaos.read_ledger())

                def flowing() -> bool:
                    done = len(chaos.read_ledger())
                    return done > done_before or (done == jobs and not chaos.producing())

                wait_until(flowing, 30, "jobs after restart")
                recoveries.append(time.time() - back)

        chaos.drive(120, tick)
        chaos.check(report)
        report.max_recovery_s = max(recoveries, default=0.0)
        said = chaos.logs().count("cannot reach Redis")
        report.notes["workers_said_unreachable"] = f"{min(said, workers)}/{workers}"
        report.notes["producer_retries"] = chaos.producer_errors
        report.notes["reclaimed_leases"] = chaos.reclaimed()
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def paused_worker(
    jobs: int = 150, concurrency: int = 4, lease_s: float = 1.0, pause_s: float = 2.5
) -> Report:
    """SIGSTOP a worker past its leases, then SIGCONT it: its late outcomes must be refused."""
    report = Report("paused_worker")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        zombie = chaos.start_worker(concurrency)
        chaos.start_worker(concurrency)
        chaos.enqueue(chaos.calls(jobs, ms=150))
        orphans = Orphans(chaos)
        wait_until(lambda: bool(chaos.held_by(zombie.pid)), 30, "the worker to hold jobs")
        zombie.send_signal(signal.SIGSTOP)
        paused_at = time.monotonic()
        orphans.add(chaos.held_by(zombie.pid), paused_at)
        report.kills = 1
        resumed = [False]

        def tick(t: float) -> None:
            orphans.poll()
            if not resumed[0] and time.monotonic() - paused_at >= pause_s:
                zombie.send_signal(signal.SIGCONT)
                resumed[0] = True

        chaos.drive(120, tick)
        if not resumed[0]:
            zombie.send_signal(signal.SIGCONT)
        wait_until(lambda: "outcome refused" in chaos.logs() or not orphans.total, 15, "refusal")
        chaos.check(report)
        report.in_flight_at_kills = orphans.total
        report.max_recovery_s = max(orphans.recovery_s, default=0.0)
        report.notes["late_outcomes_refused"] = chaos.logs().count("outcome refused")
        report.notes["pause"] = f"{pause_s}s"
        report.notes["lease"] = f"{lease_s}s"
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def redis_paused(jobs: int = 1500, pause_s: float = 8.0, lease_s: float = 5.0) -> Report:
    """SIGSTOP Redis ``pause_s`` under load (a hung server, not a dead one), then SIGCONT it."""
    report = Report("redis_paused")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        for _ in range(2):
            chaos.start_worker(4)
        chaos.produce_in_background(chaos.calls(jobs, ms=20), batch=50, every_s=0.1)
        paused = [False]

        def tick(t: float) -> None:
            if paused[0] or t < 1.5 or chaos.server.proc is None:
                return
            paused[0] = True
            report.in_flight_at_kills = chaos.ctl.zcard(chaos.keys.inflight)
            chaos.server.proc.send_signal(signal.SIGSTOP)
            time.sleep(pause_s)
            chaos.server.proc.send_signal(signal.SIGCONT)
            back = time.time()
            before = len(chaos.read_ledger())
            wait_until(lambda: len(chaos.read_ledger()) > before, 60, "jobs after the pause")
            report.max_recovery_s = time.time() - back

        chaos.drive(120, tick)
        chaos.check(report)
        report.notes["pause"] = f"{pause_s:.0f}s"
        report.notes["lease"] = f"{lease_s:.0f}s"
        report.notes["reclaimed_leases"] = chaos.reclaimed()
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def client_kills(
    jobs: int = 600, workers: int = 2, concurrency: int = 4, every_s: float = 1.0,
    lease_s: float = 3.0,
) -> Report:  # fmt: skip
    """``CLIENT KILL`` every worker and producer connection every ``every_s`` seconds."""
    report = Report("client_kill")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        for _ in range(workers):
            chaos.start_worker(concurrency)
        calls = chaos.calls(jobs, ms=30)
        chaos.produce_in_background(calls, batch=max(1, jobs // 30), every_s=0.1)
        next_kill = [every_s]

        def tick(t: float) -> None:
            if t >= next_kill[0]:
                with contextlib.suppress(redis.RedisError):
                    report.client_kills += chaos.ctl.client_kill_filter(_type="normal")
                    report.client_kills += chaos.ctl.client_kill_filter(_type="pubsub")
                next_kill[0] = t + every_s

        chaos.drive(120, tick)
        chaos.check(report)
        records = sum(1 for s in chaos.statuses().values() if s is not None)
        report.notes["connections_killed"] = report.client_kills
        report.notes["duplicate_enqueues"] = records - len(set(chaos.ids))
        report.notes["enqueue_resent"] = chaos.producer_existing
        report.notes["reclaimed_leases"] = chaos.reclaimed()
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def idle_outage(down_s: float = 10.0) -> Report:
    """Redis down ``down_s`` while a worker idles; time its pickup of a job once Redis is back."""
    report = Report("idle_outage")
    t0 = time.monotonic()
    with Chaos(lease_s=5.0) as chaos:
        chaos.start_worker(2)
        chaos.enqueue(chaos.calls(1))
        chaos.drive(30)
        chaos.server.kill()
        time.sleep(down_s)
        chaos.server.start()
        back = time.time()
        report.redis_restarts = 1
        chaos.enqueue(chaos.calls(1))
        job_id = chaos.ids[-1]
        wait_until(lambda: chaos.first_start(job_id) is not None, 30, "pickup after the outage")
        report.max_recovery_s = (chaos.first_start(job_id) or back) - back
        chaos.check(report)
        report.notes["down"] = f"{down_s:.0f}s"
        report.notes["worker_said_unreachable"] = "cannot reach Redis" in chaos.logs()
        report.notes["worker_said_reconnected"] = "reconnected to Redis" in chaos.logs()
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def long_jobs(
    jobs: int = 4, workers: int = 2, lease_s: float = 1.0, job_s: float = 3.0, burners: int = 2
) -> Report:
    """CPU-bound jobs three times longer than the lease while other processes load the CPUs."""
    report = Report("long_jobs_cpu")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos, cpu_burners(burners):
        for _ in range(workers):
            chaos.start_worker(max(1, jobs // workers))
        chaos.enqueue(chaos.calls(jobs, ms=job_s * 1000, cpu=True))
        chaos.drive(60 + jobs * job_s)
        chaos.check(report)
        pipe = chaos.ctl.pipeline(transaction=False)
        for job_id in chaos.ids:
            pipe.hmget(chaos.keys.job(job_id), "lost", "v")
        rows = pipe.execute()
        report.notes["spurious_reclaims"] = sum(int(lost or 0) for lost, _ in rows)
        report.notes["redeliveries"] = sum(int(d or 0) - 1 for _, d in rows)
        report.notes["lease"] = f"{lease_s}s"
        report.notes["job"] = f"{job_s}s"
        report.notes["cpu_burners"] = burners
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def poison(jobs: int = 20, max_deliveries: int = 3, lease_s: float = 1.0) -> Report:
    """A job that kills its worker (``os._exit``): buried as poison after ``max_deliveries``."""
    report = Report("poison")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s, max_deliveries=max_deliveries) as chaos:
        chaos.respawn_concurrency = 1
        for _ in range(2):
            chaos.start_worker(1)
        bad = chaos.calls(1, task="chaos.poison")
        chaos.enqueue([*bad, *chaos.calls(jobs, ms=10)])
        bad_id = chaos.ids[0]
        chaos.drive(30 + 3 * max_deliveries * lease_s, respawn=2)
        chaos.check(report, expect_dead=[bad_id])
        rec = chaos.ctl.hgetall(chaos.keys.job(bad_id))
        report.kills = chaos.started_workers - 2  # each respawn replaced a worker it killed
        report.notes["poison_status"] = _word(rec.get("s"))
        report.notes["deliveries"] = rec.get("v")
        report.notes["reason"] = rec.get("error")
        report.notes["in_dead_set"] = chaos.ctl.zscore(chaos.keys.dead, bad_id) is not None
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def maxmemory(payload_kib: int = 16, limit_mib: int = 4) -> Report:
    """Redis at ``maxmemory`` with ``noeviction``: ``.delay()`` raises, nothing half-written."""
    report = Report("maxmemory")
    t0 = time.monotonic()
    args = ["--maxmemory", f"{limit_mib}mb", "--maxmemory-policy", "noeviction"]
    with Chaos(redis_args=args) as chaos:
        blob = "x" * (payload_kib * 1024)
        error: BrokerError | None = None
        accepted: list[str] = []
        for _ in range(limit_mib * 1024 // payload_kib * 4):
            call = chaos.calls(1, blob=blob)
            try:
                chaos.client.submit(call)
            except BrokerError as exc:
                error = exc
                chaos.ids.pop()
                break
            accepted.append(call[0].options.job_id or "")
        refused_id = f"j{len(chaos.ids):07d}"
        half = chaos.ctl.exists(chaos.keys.job(refused_id))
        ready = chaos.ctl.llen(chaos.keys.ready(JobPriority.NORMAL))
        report.notes["accepted"] = len(accepted)
        report.notes["error"] = (
            f"{type(error).__name__}: {str(error).split(':')[0]}" if error else None
        )
        report.notes["half_written"] = int(half) + abs(ready - len(accepted))
        chaos.ctl.config_set("maxmemory", "0")
        chaos.start_worker(8)
        chaos.drive(60)
        chaos.check(report)
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def rss(jobs: int = 5000, concurrency: int = 50) -> Report:
    """``jobs`` async jobs through one worker: resident memory at 10 % done and at the end."""
    report = Report("rss")
    t0 = time.monotonic()
    with Chaos(lease_s=30.0, worker_env={"CHAOS_FSYNC": "0"}) as chaos:
        proc = chaos.start_worker(concurrency)
        for i in range(0, jobs, 1000):
            chaos.enqueue(chaos.calls(min(1000, jobs - i), task="chaos.awork"))
        samples: list[tuple[int, int]] = []

        def tick(t: float) -> None:
            done = len(chaos.read_ledger())
            if not samples or done - samples[-1][0] >= jobs // 10:
                samples.append((done, rss_kib(proc.pid)))

        run_t0 = time.monotonic()
        chaos.drive(600, tick)
        run_s = time.monotonic() - run_t0
        samples.append((len(chaos.read_ledger()), rss_kib(proc.pid)))
        chaos.check(report)
        warm = next((kib for done, kib in samples if done >= jobs // 10), samples[0][1])
        report.notes["rss_start_mib"] = round(warm / 1024, 1)
        report.notes["rss_end_mib"] = round(samples[-1][1] / 1024, 1)
        report.notes["rss_peak_mib"] = round(max(k for _, k in samples) / 1024, 1)
        report.notes["jobs_per_s"] = round(jobs / run_s)
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


NETWORK_FAULTS = ("latency", "drops", "partition", "half_open")


def network_fault(
    fault: str | Sequence[str], jobs: int = 400, fault_s: float = 3.0, lease_s: float = 1.0,
    proxied: int = 2, direct: int = 1, concurrency: int = 4, ms: int = 30,
) -> Report:  # fmt: skip
    """``proxied`` workers reach Redis through a :class:`~tests.support.faultproxy.FaultProxy`,
    ``direct`` workers straight; half a second into the run the proxy injects ``fault`` (or each
    of several, one second apart) for ``fault_s`` seconds while a producer enqueues straight to
    Redis until the last fault begins:

    * ``latency``: every chunk delivered 0.25 s late, both ways (a latency spike);
    * ``drops``: every proxied connection reset every 0.5 s;
    * ``partition``: a black hole (nothing passes, nothing closes), then healed;
    * ``half_open``: requests reach Redis, replies never return, nothing closes, then healed.

    ``fault_s`` longer than ``lease_s`` makes the proxied workers' leases lapse: the direct
    worker (or the proxied ones after the fault) runs those jobs again and their late outcomes
    are refused. Duplicates are allowed only for jobs a proxied worker held during a fault.
    """
    faults = [fault] if isinstance(fault, str) else list(fault)
    for f in faults:
        if f not in NETWORK_FAULTS:
            raise ValueError(f"unknown fault {f!r}; use one of {NETWORK_FAULTS}")
    report = Report("net_" + "+".join(faults))
    t0 = time.monotonic()
    env = {"REDIS_SOCKET_TIMEOUT": "1", "REDIS_SOCKET_CONNECT_TIMEOUT": "1"}
    with Chaos(lease_s=lease_s, worker_env=env) as chaos, FaultProxy(chaos.server.port) as proxy:
        behind = [
            chaos.start_worker(concurrency, url=proxy.url(), wait=False) for _ in range(proxied)
        ]
        for _ in range(direct):
            chaos.start_worker(concurrency, wait=False)
        wait_until(lambda: len(chaos.up()) == proxied + direct, 60, "workers up")
        windows = [
            _FaultWindow(f, proxy, start_s=0.5 + i * (fault_s + 1.0), length_s=fault_s)
            for i, f in enumerate(faults)
        ]
        produce_s = windows[-1].start_s + 0.5
        batch = max(1, jobs // 40)
        chaos.produce_in_background(chaos.calls(jobs, ms=ms), batch, every_s=produce_s / 40)
        exposed: set[str] = set()  # jobs a proxied worker held at some time during a fault

        def tick(t: float) -> None:
            for window in windows:
                window.step(t)
            if any(w.on for w in windows):
                for proc in behind:
                    exposed.update(chaos.held_by(proc.pid))
                report.in_flight_at_kills = len(exposed)

        chaos.drive(90 + len(faults) * fault_s, tick)
        for window in windows:
            if window.healed_at is None:
                window.end()
        chaos.check(report)
        report.max_recovery_s = _recovery_s(chaos, behind, windows[-1].healed_at)
        report.notes["faults"] = f"{'+'.join(faults)} {fault_s:g}s each"
        report.notes["lease"] = f"{lease_s:g}s"
        report.notes["connections_dropped"] = sum(w.dropped for w in windows)
        report.notes["late_outcomes_refused"] = chaos.logs().count("outcome refused")
        report.notes["reclaimed_leases"] = chaos.reclaimed()
        report.notes["proxied_workers_alive"] = all(p.poll() is None for p in behind)
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


class _FaultWindow:
    """Turns one proxy fault on at ``start_s`` and off ``length_s`` later (wall time of
    ``Chaos.drive``'s ticks)."""

    def __init__(self, fault: str, proxy: FaultProxy, *, start_s: float, length_s: float):
        self.fault, self.proxy = fault, proxy
        self.start_s, self.end_s = start_s, start_s + length_s
        self.on = False
        self.healed_at: float | None = None  # epoch seconds, to compare with the ledger
        self.dropped = 0
        self._next_drop_s = start_s

    def step(self, t: float) -> str:
        if not self.on and self.healed_at is None and t >= self.start_s:
            self.on = True
            self._begin()
            return "started"
        if self.on and t >= self.end_s:
            self.end()
            return "ended"
        if self.on and self.fault == "drops" and t >= self._next_drop_s:
            self.dropped += self.proxy.drop_connections()
            self._next_drop_s = t + 0.5
        return ""

    def _begin(self) -> None:
        if self.fault == "latency":
            self.proxy.latency_s = 0.25
        elif self.fault == "partition":
            self.proxy.partition()
        elif self.fault == "half_open":
            self.proxy.half_open()

    def end(self) -> None:
        self.on = False
        self.proxy.latency_s = 0.0
        self.dropped += self.proxy.heal()
        self.healed_at = time.time()


def _recovery_s(
    chaos: Chaos, behind: Sequence[subprocess.Popen[bytes]], healed_at: float | None
) -> float | None:
    """Seconds from the heal to the first job a proxied worker started after it."""
    if healed_at is None:
        return None
    pids = {str(p.pid) for p in behind}
    starts = [
        float(parts[4])
        for line in chaos.ledger.read_text().splitlines()
        if (parts := line.split())[3] in pids and float(parts[4]) >= healed_at
    ]
    return min(starts) - healed_at if starts else None


SHORT: dict[str, Callable[[], Report]] = {
    "kill_workers": kill_workers,
    "redis_restarts": redis_restarts,
    "client_kill": client_kills,
    "paused_worker": paused_worker,
    "idle_outage": lambda: idle_outage(down_s=3.0),
    "long_jobs_cpu": long_jobs,
    "poison": poison,
    "maxmemory": maxmemory,
    "rss": rss,
    "net_faults": lambda: network_fault(NETWORK_FAULTS, jobs=200, fault_s=1.5, proxied=1),
}
LONG: dict[str, Callable[[], Report]] = {
    "kill_workers": lambda: kill_workers(
        jobs=10_000, workers=3, concurrency=8, kill_every_s=2.0, max_ms=200
    ),
    "redis_restarts": lambda: redis_restarts(jobs=5000, workers=3, concurrency=8),
    "client_kill": lambda: client_kills(jobs=5000, workers=3, concurrency=8),
    "paused_worker": lambda: paused_worker(jobs=1000, concurrency=8, pause_s=5.0),
    "redis_paused": redis_paused,
    "idle_outage": lambda: idle_outage(down_s=10.0),
    "long_jobs_cpu": lambda: long_jobs(jobs=8, workers=2, lease_s=1.0, job_s=5.0),
    "poison": lambda: poison(jobs=200, max_deliveries=5),
    "maxmemory": maxmemory,
    "rss": lambda: rss(jobs=100_000),
    **{
        f"net_{f}": (lambda f=f: network_fault(f, jobs=3000, fault_s=8.0, lease_s=2.0))  # type: ignore[misc]
        for f in NETWORK_FAULTS
    },
}
