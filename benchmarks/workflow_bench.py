"""Workflow figures: a big chord's cost per member, and a long chain's overhead per step.

    python benchmarks/workflow_bench.py                 # private redis-server; about 30 s
    python benchmarks/workflow_bench.py --members 10000 --steps 1000 --redis-url redis://...

Everything runs in this process: one worker (async no-op tasks, concurrency 50) and the
producer. Printed as a table; ``--json PATH`` writes the raw figures.

- **chord**: ``chord(group(noop.s(i) for i in range(N)), mark.s()).delay()`` then one burst
  worker; time from before ``delay()`` to the callback's first line. Beside it the same N plain
  jobs (``enqueue_many`` + the same worker) and their time to the last job's start. Per member:
  requests sent to Redis (script calls, commands, pipelines: what crosses the network) and
  commands Redis ran (``INFO commandstats``, counting each command a script runs inside), each
  minus the plain job's.
- **chain**: a chain of S steps of one no-op task, timed from ``delay()`` to the last step's
  start, per step; beside it S jobs run one after another by hand (each job's body enqueues the
  next), which is the plain pickup cost of a step; the overhead is the difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench import private_redis
from benchmarks.runner import count_round_trips
from taskforge import Settings, Taskforge, Worker, chain, chord, group

ROUND_TRIPS: Callable[[], int] = count_round_trips()


class Probe:
    """Counts what Redis ran and what was sent to it between two points."""

    def __init__(self, url: str):
        self.redis = redis.Redis.from_url(url)

    def _stats(self) -> int:
        info = self.redis.info("commandstats")
        return sum(int(v["calls"]) for v in info.values())

    def __enter__(self) -> Probe:
        self.sent0, self.ran0 = ROUND_TRIPS(), self._stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sent = ROUND_TRIPS() - self.sent0
        self.ran = self._stats() - self.ran0 - 2  # our own two INFO calls


class Marks:
    """What the tasks saw: when the last one started, and when ``target`` starts were seen."""

    def __init__(self) -> None:
        self.last = 0.0
        self.count = 0
        self.target = 0
        self.done: anyio.Event | None = None

    def started(self) -> None:
        self.last = time.perf_counter()
        self.count += 1
        if self.count >= self.target and self.done is not None:
            self.done.set()


def make_app(url: str) -> tuple[Taskforge, Marks]:
    app = Taskforge(Settings(redis_url=url, prefix=f"wfb-{uuid.uuid4().hex[:8]}"))
    marks = Marks()

    @app.task(name="b.noop")
    async def noop(*args: Any) -> int:
        marks.started()
        return 1

    @app.task(name="b.mark")
    async def mark(values: list[int]) -> int:
        marks.started()
        return len(values)

    @app.task(name="b.hop")
    async def hop(left: int) -> None:
        marks.started()
        if left > 1:
            await app.registry.get("b.hop").adelay(left - 1)

    return app, marks


def run_until(app: Taskforge, marks: Marks, target: int, send: Callable[[], Any]) -> float:
    """Start an idle worker, then ``send()``; seconds from the send to the ``target``-th task
    start. (Not burst mode: a burst worker pauses 10 ms whenever outcomes are being written.)"""
    marks.target = target

    async def go() -> float:
        marks.done = anyio.Event()
        worker = Worker(app.settings, app.registry, concurrency=50, block_s=1.0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await anyio.sleep(0.5)  # the worker is up and blocked, idle
            started = time.perf_counter()
            await anyio.to_thread.run_sync(send)
            with anyio.fail_after(600):
                await marks.done.wait()
            worker.stop()
        return marks.last - started

    return anyio.run(go)


def bench_chord(url: str, members: int) -> dict[str, Any]:
    app, marks = make_app(url)
    noop = app.registry.get("b.noop")
    calls = [noop.s(i) for i in range(members)]
    with Probe(url) as plain:
        plain_s = run_until(app, marks, members, lambda: app.enqueue_many(calls))
    app.client.close()

    app, marks = make_app(url)
    noop, mark = app.registry.get("b.noop"), app.registry.get("b.mark")
    workflow = chord(group(noop.s(i) for i in range(members)), mark.s())
    handles = []
    with Probe(url) as wf:
        chord_s = run_until(app, marks, members + 1, lambda: handles.append(workflow.delay()))
    assert handles[0].result(timeout=30) == members
    app.client.close()
    # The callback is one more job than the plain run's N: count it as a member's share.
    return {
        "members": members,
        "plain_s": plain_s,
        "chord_s": chord_s,
        "sent_per_member_extra": (wf.sent - plain.sent) / members,
        "ran_per_member_extra": (wf.ran - plain.ran) / members,
        "plain_sent_per_job": plain.sent / members,
        "plain_ran_per_job": plain.ran / members,
    }


def bench_chain(url: str, steps: int) -> dict[str, Any]:
    app, marks = make_app(url)
    hop = app.registry.get("b.hop")
    cpu0, sent0 = time.process_time(), ROUND_TRIPS()
    by_hand_s = run_until(app, marks, steps, lambda: hop.delay(steps))
    hand_cpu, hand_sent = time.process_time() - cpu0, ROUND_TRIPS() - sent0
    app.client.close()

    app, marks = make_app(url)
    noop = app.registry.get("b.noop")
    workflow = chain([noop.s(0)] + [noop.s() for _ in range(steps - 1)])
    handles = []
    cpu0, sent0 = time.process_time(), ROUND_TRIPS()
    chain_s = run_until(app, marks, steps, lambda: handles.append(workflow.delay()))
    chain_cpu, chain_sent = time.process_time() - cpu0, ROUND_TRIPS() - sent0
    assert handles[0].result(timeout=30) == 1
    app.client.close()
    return {
        "steps": steps,
        "by_hand_ms_per_step": by_hand_s * 1000 / steps,
        "chain_ms_per_step": chain_s * 1000 / steps,
        "overhead_ms_per_step": (chain_s - by_hand_s) * 1000 / steps,
        "extra_cpu_ms_per_step": (chain_cpu - hand_cpu) * 1000 / steps,
        "extra_requests_per_step": (chain_sent - hand_sent) / steps,
    }


def table(chord_fig: dict[str, Any], chain_fig: dict[str, Any]) -> str:
    n, steps = f"{chord_fig['members']:,}", f"{chain_fig['steps']:,}"
    plain = f"{chord_fig['plain_sent_per_job']:.3f} / {chord_fig['plain_ran_per_job']:.1f}"
    rows = [
        ("figure", "value", "target"),
        (f"chord of {n}: delay() -> callback start", f"{chord_fig['chord_s']:.2f} s", ""),
        (f"  {n} plain jobs: enqueue -> last start", f"{chord_fig['plain_s']:.2f} s", ""),
        ("  requests per member beyond a plain job's", f"{chord_fig['sent_per_member_extra']:.3f}",
         "<= 2"),
        ("  commands run per member beyond (incl. Lua)", f"{chord_fig['ran_per_member_extra']:.1f}",
         ""),
        ("  plain job: requests / commands run", plain, ""),
        (f"chain of {steps} steps: ms per step", f"{chain_fig['chain_ms_per_step']:.2f}", ""),
        ("  plain jobs in sequence: ms per job", f"{chain_fig['by_hand_ms_per_step']:.2f}", ""),
        ("  overhead per step", f"{chain_fig['overhead_ms_per_step']:.2f} ms", "<= 1 ms"),
        ("  of which: worker CPU per step", f"{chain_fig['extra_cpu_ms_per_step']:.2f} ms", ""),
        ("  and requests to Redis per step", f"{chain_fig['extra_requests_per_step']:.2f}", ""),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{a:<{width}}  {b:>12}  {c}" for a, b, c in rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=None, help="use this Redis (default: a private one)")
    parser.add_argument("--members", type=int, default=10_000, help="chord members")
    parser.add_argument("--steps", type=int, default=1_000, help="chain steps")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    def run(url: str) -> dict[str, Any]:
        return {"chord": bench_chord(url, args.members), "chain": bench_chain(url, args.steps)}

    if args.redis_url:
        figures = run(args.redis_url)
    else:
        with private_redis() as url:
            figures = run(url)
    print(table(figures["chord"], figures["chain"]))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
