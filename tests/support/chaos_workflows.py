"""Chaos for workflows: chains and chords under worker SIGKILLs and a Redis ``kill -9``.

Uses the harness of :mod:`tests.support.chaos` (private Redis with AOF ``appendfsync always``, real
``taskforge worker`` processes, an fsync'd ledger outside Redis). Every workflow must end
``succeeded`` with its exact value (nothing lost, no step skipped or fed twice), and every
chord's callback must appear in the ledger exactly once, whatever was killed when. A member may
run twice only if it was in flight on a killed worker (at-least-once, as any job).

The tests (``tests/system/test_workflow_chaos.py``) call the scenarios directly;
``python -m benchmarks.chaos_workflows`` runs them from the command line.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from typing import Any

from taskforge import BrokerError, Taskforge, chain, chord, group
from taskforge.canvas import walk_calls
from taskforge.workflow import WorkflowClient, WorkflowStatus
from tests.support.chaos import Chaos, Orphans, Report


class Workflows:
    """The chains and chords of one scenario, and their expected values."""

    def __init__(self, chaos: Chaos, chains: int, steps: int, chords: int, members: int):
        app = Taskforge(chaos.settings)
        self.client = WorkflowClient(chaos.client)
        self.expected: dict[str, int] = {}
        self.shapes: dict[str, Any] = {}
        rnd = random.Random(7)
        for i in range(chains):
            first = app.call("chaos.step", i, ms=rnd.randint(50, 200))
            rest = [app.call("chaos.step", ms=rnd.randint(50, 200)) for _ in range(steps - 1)]
            self.shapes[f"chain-{i}"] = chain(first, *rest)
            self.expected[f"chain-{i}"] = i + steps
        for i in range(chords):
            head = group(app.call("chaos.step", j, ms=rnd.randint(50, 200)) for j in range(members))
            self.shapes[f"chord-{i}"] = chord(head, app.call("chaos.gather"))
            self.expected[f"chord-{i}"] = sum(j + 1 for j in range(members))

    def submit(self, deadline_s: float = 60.0) -> None:
        """Send every workflow; retried with the same ids through an outage (no duplicates)."""
        deadline = time.monotonic() + deadline_s
        for wid, shape in self.shapes.items():
            while True:
                try:
                    self.client.submit(shape, workflow_id=wid)
                    break
                except BrokerError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    def statuses(self) -> dict[str, str | None]:
        """Each workflow's status (None: unreadable right now)."""
        out: dict[str, str | None] = {}
        for wid in self.shapes:
            try:
                out[wid] = self.client.handle(wid).info().status.value
            except BrokerError:
                out[wid] = None
        return out

    def settled(self) -> bool:
        return all(s not in (None, WorkflowStatus.RUNNING) for s in self.statuses().values())

    def check(self, chaos: Chaos, report: Report) -> None:
        """Lost = a workflow not succeeded with its exact value; callbacks run twice."""
        ran = chaos.read_ledger()
        lost = []
        for wid, value in self.expected.items():
            try:
                got = self.client.handle(wid).result(timeout=0.5)
            except Exception:  # any failure to produce the value is a loss
                got = None
            if got != value:
                lost.append(wid)
        report.jobs = sum(len(_members(s)) for s in self.shapes.values())
        report.lost = len(lost)
        callbacks = [
            f"wf:{w}:{len(_members(s)) - 1}"
            for w, s in self.shapes.items()
            if w.startswith("chord")
        ]
        report.notes["workflows"] = len(self.shapes)
        report.notes["callbacks_twice"] = sum(1 for c in callbacks if ran[c] > 1)
        report.notes["callbacks_never"] = sum(1 for c in callbacks if ran[c] == 0)
        report.duplicated = sum(1 for n in ran.values() if n > 1)
        if lost:
            report.notes["lost_workflows"] = lost[:5]
            chaos.keep_dir = True
        report.notes["outbox_replays"] = chaos.logs().count("replaying ")
        tracebacks = chaos.logs().count("Traceback")
        if tracebacks:
            report.notes["worker_tracebacks"] = tracebacks


def _members(shape: Any) -> list[Any]:
    return list(walk_calls(shape))


def drive(
    chaos: Chaos, flows: Workflows, deadline_s: float, tick: Callable[[float], None], respawn: int
) -> None:
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        tick(elapsed)
        for _ in range(respawn - len(chaos.alive())):
            chaos.start_worker(chaos.respawn_concurrency, wait=False)
        if flows.settled():
            return
        if elapsed > deadline_s:
            print(f"chaos: workflows not settled after {deadline_s:.0f}s", file=sys.stderr)
            return
        time.sleep(0.1)


def workflows_kill_workers(
    chains: int = 40, steps: int = 6, chords: int = 8, members: int = 25, workers: int = 3,
    concurrency: int = 4, kill_every_s: float = 1.5, lease_s: float = 2.0, seed: int = 3,
) -> Report:  # fmt: skip
    """SIGKILL a random worker every ``kill_every_s`` (± 30 %) while chains and chords run."""
    rnd = random.Random(seed)
    report = Report("workflows_kill_workers")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        chaos.respawn_concurrency = concurrency
        for _ in range(workers):
            chaos.start_worker(concurrency)
        flows = Workflows(chaos, chains, steps, chords, members)
        flows.submit()
        orphans = Orphans(chaos)
        next_kill = [kill_every_s]

        def tick(t: float) -> None:
            if t >= next_kill[0] and chaos.up():
                victim = rnd.choice(chaos.up())
                orphans.add(chaos.kill_worker(victim), time.monotonic())
                report.kills += 1
                next_kill[0] = t + kill_every_s * rnd.uniform(0.7, 1.3)

        drive(chaos, flows, 120, tick, respawn=workers)
        flows.check(chaos, report)
        report.in_flight_at_kills = orphans.total
        report.notes["lease"] = f"{lease_s}s"
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


def workflows_redis_restarts(
    chains: int = 30, steps: int = 5, chords: int = 6, members: int = 20, workers: int = 2,
    concurrency: int = 4, restarts: int = 2, down_s: float = 1.0, lease_s: float = 5.0,
) -> Report:  # fmt: skip
    """``kill -9`` Redis and restart it (AOF) ``restarts`` times while workflows run."""
    report = Report("workflows_redis_restarts")
    t0 = time.monotonic()
    with Chaos(lease_s=lease_s) as chaos:
        for _ in range(workers):
            chaos.start_worker(concurrency)
        flows = Workflows(chaos, chains, steps, chords, members)
        flows.submit()
        plan = [1.0 + i * 2.5 for i in range(restarts)]

        def tick(t: float) -> None:
            if plan and t >= plan[0]:
                plan.pop(0)
                chaos.server.kill()
                time.sleep(down_s)
                chaos.server.start()
                report.redis_restarts += 1

        drive(chaos, flows, 180, tick, respawn=0)
        flows.check(chaos, report)
        chaos.stop_workers()
    report.wall_s = time.monotonic() - t0
    return report


SHORT: dict[str, Callable[[], Report]] = {
    "workflows_kill_workers": workflows_kill_workers,
    "workflows_redis_restarts": workflows_redis_restarts,
}
LONG: dict[str, Callable[[], Report]] = {
    "workflows_kill_workers": lambda: workflows_kill_workers(chains=200, chords=20, members=50),
    "workflows_redis_restarts": lambda: workflows_redis_restarts(chains=200, chords=20, members=50),
}
