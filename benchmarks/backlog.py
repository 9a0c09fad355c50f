"""How taskforge's costs grow with the backlog and with the number of queues (issue 18's curves).

    python benchmarks/backlog.py --quick              # 10k and 100k, 1/10/100 queues (< 2 min)
    python benchmarks/backlog.py                      # 10k, 100k, 1M; 1/10/100/1,000 queues
    python benchmarks/backlog.py --big                # and 10M waiting jobs (RAM: see the table)
    python benchmarks/backlog.py --peer-venvs /tmp/peers --systems taskforge,huey

**Depth** (per system, per depth D, each on an emptied private Redis): queue D waiting no-op jobs
by the system's fastest means; the last ``--bulk-n`` of them are the timed bulk enqueue at that
depth (taskforge ``enqueue_many``; Huey has none: its fill pipelines ``LPUSH``, not timed), then
``--one-call-n`` one-call enqueues on top (``.delay()``, Huey ``task()``), timed each. Redis'
``used_memory`` then, minus the empty server's, / D is bytes per waiting job. Then one worker
process drains a slice from the top (``--slice``, at most D / 2) and stops: the rate is first
body's start -> last body's end (``runner.Span``), at ``-c --concurrency``.

**Queues** (taskforge; a Huey consumer serves one queue): ``--queue-total`` jobs spread
round-robin over K queues by one ``enqueue_many`` stream (timed: bulk rate), bytes per job, then
one worker serving all K queues (``Worker(queues=[...])``) drains a slice.

Every step runs in a fresh runner process (``taskforge_tasks.py`` / ``peer_tasks_huey.py``, the
same as ``bench.py``), against the public API only, so it measures whatever record layout the
tree has. Prints markdown tables; writes JSON to ``benchmarks/results/``. The private server has
no ``maxmemory``; a depth whose estimated memory (bytes per job at the depth before) exceeds
70 % of ``MemAvailable`` is skipped, and said.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import RESULTS, Runner, _redis, find_pythons

DEPTHS = (10_000, 100_000, 1_000_000)
BIG_DEPTH = 10_000_000
QUEUE_COUNTS = (1, 10, 100, 1_000)
#: What each curve runs for: taskforge both, Huey (the best peer on memory) the depth curve.
SYSTEMS = ("taskforge", "huey")


def mem_available() -> int | None:
    """``MemAvailable`` of this host, bytes (None: not Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Backlog:
    """The two curves, run through :class:`bench.Runner` on one Redis."""

    def __init__(self, runner: Runner, args: argparse.Namespace):
        self.runner, self.args = runner, args

    def _memory(self) -> dict[str, int]:
        info = self.runner.redis.info("memory")
        return {k: int(info[k]) for k in ("used_memory", "used_memory_rss", "used_memory_peak")}

    def _call(self, system: str, prefix: str, argv: list[str]) -> dict[str, Any]:
        return self.runner.call(system, prefix, argv)

    def warm_up(self, system: str) -> None:
        """Write and drop a few jobs: a fresh server keeps ~0.3 MB of its first writes through
        the clean slate, which would land on the first point (+27 bytes per job at 10,000).
        Only on the private server: a ``--redis-url`` one is never emptied, nor fresh."""
        if not self.runner.private:
            return
        self._call(system, self.runner.fresh_prefix(), ["fill", "--n", "1000"])
        self.runner.clean_slate()

    def depth(self, system: str, depth: int) -> dict[str, Any]:
        """One point of the depth curve."""
        a, prefix = self.args, self.runner.fresh_prefix()
        self.runner.clean_slate()
        empty = self._memory()["used_memory"]
        bulk_n = min(a.bulk_n, depth // 4) if system == "taskforge" else 0
        one_n = min(a.one_call_n, depth // 4)
        started = time.monotonic()
        filled = self._call(system, prefix, ["fill", "--n", str(depth - bulk_n - one_n)])
        out: dict[str, Any] = {"system": system, "depth": depth, "fill_jobs_per_s": None}
        out["fill_jobs_per_s"] = filled.get("jobs_per_s")
        if bulk_n:
            bulk = self._call(system, prefix, ["enqueue", "--mode", "bulk", "--n", str(bulk_n - 1)])
            out["bulk_jobs_per_s"] = bulk["jobs_per_s"]
        one = self._call(system, prefix, ["enqueue", "--mode", "sync", "--n", str(one_n - 1)])
        out.update(one_call_jobs_per_s=one["jobs_per_s"], one_call_p50_us=one["p50_us"])
        out["fill_s"] = time.monotonic() - started
        memory = self._memory()
        out["bytes_per_job"] = (memory["used_memory"] - empty) / depth
        out["redis_mib"] = memory["used_memory"] / 2**20
        out["redis_rss_mib"] = memory["used_memory_rss"] / 2**20
        out.update(self._drain(system, prefix, min(a.slice, depth // 2), 0))
        return out

    def queues(self, count: int) -> dict[str, Any]:
        """One point of the queue curve (taskforge)."""
        a, prefix = self.args, self.runner.fresh_prefix()
        self.runner.clean_slate()
        empty = self._memory()["used_memory"]
        argv = ["enqueue", "--mode", "bulk", "--n", str(a.queue_total - 1), "--queues", str(count)]
        bulk = self._call("taskforge", prefix, argv)
        memory = self._memory()
        out: dict[str, Any] = {"queues": count, "jobs": a.queue_total}
        out["bulk_jobs_per_s"] = bulk["jobs_per_s"]
        out["bytes_per_job"] = (memory["used_memory"] - empty) / a.queue_total
        out.update(self._drain("taskforge", prefix, min(a.slice, a.queue_total // 2), count))
        return out

    def _drain(self, system: str, prefix: str, n: int, queues: int) -> dict[str, Any]:
        argv = ["drain", "--n", str(n), "--concurrency", str(self.args.concurrency)]
        argv += ["--kind", "sync" if system == "huey" else "async", "--stop-after"]
        if queues:
            argv += ["--queues", str(queues)]
        before = self.runner.redis_cpu_s()
        result = self._call(system, prefix, argv)
        return {
            "slice": result["jobs"],
            "drain_jobs_per_s": result["jobs_per_s"],
            "drain_start_to_first_ms": result.get("start_to_first_ms"),
            "worker_cpu_us_per_job": result["cpu_us_per_job"],
            "redis_cpu_us_per_job": (self.runner.redis_cpu_s() - before) * 1e6 / result["jobs"],
            "worker_peak_rss_mib": result["peak_rss_mib"],
        }


def _fits(points: list[dict[str, Any]], depth: int) -> str | None:
    """Why ``depth`` would not fit in this host's memory (None: it fits, or nothing to go by)."""
    available = mem_available()
    if not points or available is None:
        return None
    need = points[-1]["bytes_per_job"] * depth
    if need > 0.7 * available:
        return f"needs ~{need / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available"
    return None


def run(args: argparse.Namespace, runner: Runner, systems: tuple[str, ...]) -> dict[str, Any]:
    """Both curves; the JSON document."""
    backlog = Backlog(runner, args)
    depths = list(args.depths) + ([BIG_DEPTH] if args.big else [])
    doc: dict[str, Any] = {"depth": [], "queues": [], "skipped": []}
    for system in systems:
        backlog.warm_up(system)
        done: list[dict[str, Any]] = []
        for depth in depths:
            why = _fits(done, depth)
            if why:
                doc["skipped"].append(f"{system} at {depth:,}: {why}")
                continue
            _say(f"{system}: {depth:,} waiting jobs")
            done.append(backlog.depth(system, depth))
        doc["depth"] += done
    if "taskforge" in systems:
        for count in args.queue_counts:
            _say(f"taskforge: {args.queue_total:,} jobs over {count:,} queues")
            doc["queues"].append(backlog.queues(count))
    return doc


def _say(what: str) -> None:
    print(f"  {what}", file=sys.stderr, flush=True)


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def tables(doc: dict[str, Any]) -> str:
    """The two curves as markdown tables."""
    out = [
        "| system | waiting jobs | Redis MiB | bytes / job | bulk enqueue jobs/s | one-call "
        "enqueue jobs/s | one-call p50 us | drain jobs/s | slice | worker CPU us/job | "
        "Redis CPU us/job | fill s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in doc["depth"]:
        out.append(
            f"| {p['system']} | {p['depth']:,} | {_n(p['redis_mib'])} | {_n(p['bytes_per_job'])}"
            f" | {_n(p.get('bulk_jobs_per_s'))} | {_n(p['one_call_jobs_per_s'])}"
            f" | {_n(p['one_call_p50_us'])} | {_n(p['drain_jobs_per_s'])} | {p['slice']:,}"
            f" | {_n(p['worker_cpu_us_per_job'], 1)} | {_n(p['redis_cpu_us_per_job'], 1)}"
            f" | {_n(p['fill_s'], 1)} |"
        )
    if doc["queues"]:
        out += [
            "",
            "| queues | jobs | bytes / job | bulk enqueue jobs/s | drain jobs/s | slice | "
            "worker built -> first job ms | worker CPU us/job | Redis CPU us/job |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for q in doc["queues"]:
            out.append(
                f"| {q['queues']:,} | {q['jobs']:,} | {_n(q['bytes_per_job'])}"
                f" | {_n(q['bulk_jobs_per_s'])} | {_n(q['drain_jobs_per_s'])} | {q['slice']:,}"
                f" | {_n(q['drain_start_to_first_ms'], 1)} | {_n(q['worker_cpu_us_per_job'], 1)}"
                f" | {_n(q['redis_cpu_us_per_job'], 1)} |"
            )
    out += [f"skipped: {s}" for s in doc["skipped"]]
    return "\n".join(out)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v.replace("_", "")) for v in text.split(",") if v)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--redis-url", help="this Redis instead of a private redis-server (it never "
                   "flushes it: bytes per job then include other clients' writes)")  # fmt: skip
    p.add_argument("--systems", default="taskforge", help="taskforge,huey (huey: depth only)")
    p.add_argument("--peer-venvs", help="folder of peer venvs (bench.py's): DIR/huey/bin/python")
    p.add_argument("--python", action="append", default=[], metavar="SYSTEM=PATH")
    p.add_argument("--depths", type=_ints, default=DEPTHS, help="waiting jobs, comma-separated")
    p.add_argument("--big", action="store_true", help=f"also {BIG_DEPTH:,} waiting jobs")
    p.add_argument("--queue-counts", type=_ints, default=QUEUE_COUNTS)
    p.add_argument("--queue-total", type=int, default=100_000, help="jobs over the K queues")
    p.add_argument("--slice", type=int, default=20_000, help="jobs drained at each point")
    p.add_argument("--bulk-n", type=int, default=20_000, help="timed bulk enqueue at each depth")
    p.add_argument("--one-call-n", type=int, default=2_000, help="timed one-call enqueues")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="small sizes: under 2 minutes")
    p.add_argument("--json", type=Path, help="default: results/backlog-<time>.json")
    args = p.parse_args(argv)
    args.peer_python, args.rq_worker = None, "simple"  # what bench.find_pythons reads
    if args.quick:
        args.depths, args.queue_counts, args.queue_total = (10_000, 100_000), (1, 10, 100), 20_000
        args.slice, args.bulk_n, args.one_call_n = 5_000, 5_000, 500
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both curves; print the tables; write and return the JSON document."""
    args = parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    if set(systems) - set(SYSTEMS):
        raise SystemExit(f"backlog.py runs {', '.join(SYSTEMS)}; not {args.systems}")
    pythons = find_pythons(args, systems)
    systems = tuple(s for s in systems if s == "taskforge" or s in pythons)
    started = time.time()
    with _redis(args.redis_url) as url:
        runner = Runner(url, pythons, "simple", private=args.redis_url is None)
        doc = run(args, runner, systems)
        server = runner.redis.info("server").get("redis_version")
    doc.update(
        started=started,
        wall_s=round(time.time() - started, 1),
        redis_server=server,
        mem_available_gib=(mem_available() or 0) / 2**30,
        config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    print(tables(doc))
    path = args.json or RESULTS / time.strftime("backlog-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"results: {path} ({doc['wall_s']:.0f}s)")
    return doc


if __name__ == "__main__":
    main()
