"""Where a taskforge worker's start goes: interpreter, imports, connection, startup checks,
script loading, first job. Prints one table of medians over ``--rounds`` fresh processes.

    python benchmarks/startup_profile.py --rounds 7            # a private redis-server
    python benchmarks/startup_profile.py --redis-url redis://127.0.0.1:6379/15
    python benchmarks/startup_profile.py --imports              # load-independent: see below

Each round spawns ``python startup_profile.py child``, which stamps ``time.monotonic()``
(system-wide on Linux) at each stage and reports them; the parent subtracts its spawn time.
The stages run one after the other as ``Worker.run`` would, on the worker's own broker, so the
sum is what ``run()`` costs up to the first job (the timed ``run()`` then starts warm and is
the rest: task groups, the fetch loop's first script call, the job's start).

``--imports`` measures what does not depend on the host's load, for the in-process worker
(``taskforge_tasks.py serve``) and for ``taskforge worker``: modules loaded, peak RSS after the
imports (min of ``--rounds`` fresh interpreters), and with ``--callgrind`` the instructions the
imports take (one run each under valgrind; ~30 s each). ``PYTHONPATH=<old tree>`` compares trees.
"""

from __future__ import annotations

import time

T_START = time.monotonic()  # before anything else is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
STAGES = ("interpreter", "imports", "worker built", "connect (PING)", "startup checks",
          "scripts loaded", "first job started")  # fmt: skip


def child() -> None:
    """One worker start, stage by stage; prints RESULT {stage: monotonic}."""
    stamps = {"interpreter": T_START}
    import anyio
    import redis

    sys.path.insert(0, str(HERE))
    import taskforge_tasks  # the benchmark's app: taskforge + redis + the task module
    from runner import peak_rss_mib

    from taskforge.protocol.scripts import SCRIPT_NAMES, SOURCES
    from taskforge.worker import Worker

    stamps["imports"] = time.monotonic()
    app = taskforge_tasks.app
    worker = Worker(app.settings, app.registry, concurrency=100, burst=True)
    stamps["worker built"] = time.monotonic()
    modules = sorted(m for m in sys.modules if m.split(".")[0] in {"fakeredis", "croniter",
                     "typer", "rich", "http", "taskforge"})  # fmt: skip

    async def stages() -> None:
        await worker.broker.client.ping()
        stamps["connect (PING)"] = time.monotonic()
        await worker.check_server()
        stamps["startup checks"] = time.monotonic()
        for name in ("fetch", "finish"):
            await worker.broker.client.script_load(SOURCES[name])
        stamps["scripts loaded"] = time.monotonic()
        await worker.run()

    taskforge_tasks.stamp.delay()
    started_jobs = redis.Redis.from_url(taskforge_tasks.redis_url())
    anyio.run(stages)
    key = taskforge_tasks.prefix() + taskforge_tasks.STAMP_SUFFIX
    reply = started_jobs.blpop([key], timeout=30)
    stamps["first job started"] = float(reply[1]) if reply else float("nan")
    assert SCRIPT_NAMES
    rss = peak_rss_mib()
    print("RESULT " + json.dumps({"stamps": stamps, "peak_rss_mib": rss, "modules": modules}))


#: What each process imports before it runs its worker (run from this folder).
IMPORTS = {
    "worker (taskforge_tasks.py serve)": (
        "import taskforge_tasks\nfrom taskforge.worker import Worker"
    ),
    "`taskforge worker` (its group + the tasks)": (
        "import taskforge.cli as c\n"
        "getattr(c, 'registered', lambda _: c.cli)('worker')\n"  # older trees: every group
        "import taskforge_tasks"
    ),
}
# Peak RSS from VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve, so a probe would
# report at least its parent's RSS (runner.peak_rss_mib says more).
_PROBE = (
    "import sys\nsys.path.insert(0, '.')\n{code}\n"
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
    "print('RESULT', len(sys.modules), int(hwm) / 1024)"
)


def imports(args: argparse.Namespace) -> None:
    """Modules, peak RSS and (``--callgrind``) instructions of each process's imports."""
    print("| process | modules | peak RSS MiB (min) | instructions (callgrind) |")
    print("|---|---|---|---|")
    for name, code in IMPORTS.items():
        probe = _PROBE.format(code=code)
        runs = []
        for _ in range(args.rounds):
            out = subprocess.run([sys.executable, "-c", probe], cwd=HERE, text=True,
                                 capture_output=True, check=True)  # fmt: skip
            runs.append(out.stdout.split("RESULT")[1].split())
        modules, rss = runs[0][0], min(float(r[1]) for r in runs)
        shown = f"{_instructions(probe) / 1e6:,.0f} M" if args.callgrind else "-"
        print(f"| {name} | {modules} | {rss:.1f} | {shown} |")


def _instructions(probe: str) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                          sys.executable, "-c", probe], cwd=HERE, text=True,
                         capture_output=True, check=True)  # fmt: skip
    line = next(x for x in out.stderr.splitlines() if "Collected" in x)
    return int(line.split(":")[1].strip())


def parent(args: argparse.Namespace) -> None:
    """Spawn ``--rounds`` children; print the median time of each stage."""
    sys.path.insert(0, str(HERE))
    from bench import _redis

    rows: list[dict[str, float]] = []
    rss: list[float] = []
    with _redis(args.redis_url) as url:
        for i in range(args.rounds):
            env = {**os.environ, "REDIS_URL": url, "BENCH_PREFIX": f"tfstart{os.getpid()}x{i}"}
            env["TASKFORGE_PREFIX"] = env["BENCH_PREFIX"]
            spawned = time.monotonic()
            out = subprocess.run([sys.executable, __file__, "child"], env=env, text=True,
                                 capture_output=True, timeout=120)  # fmt: skip
            line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"child failed:\n{out.stderr}")
            doc: dict[str, Any] = json.loads(line[len("RESULT ") :])
            previous, row = spawned, {}
            for stage in STAGES:
                row[stage] = (doc["stamps"][stage] - previous) * 1000
                previous = doc["stamps"][stage]
            row["total"] = (previous - spawned) * 1000
            rows.append(row)
            rss.append(doc["peak_rss_mib"])
    print(f"| stage | median ms ({args.rounds} starts) | min ms |")
    print("|---|---|---|")
    for stage in (*STAGES, "total"):
        values = [r[stage] for r in rows]
        print(f"| {stage} | {statistics.median(values):.1f} | {min(values):.1f} |")
    print(f"peak RSS after the first job: median {statistics.median(rss):.1f} MiB")
    print(f"loaded: {', '.join(doc['modules'])}")


def main() -> None:
    """``child`` (one start) or the parent's table."""
    if sys.argv[1:2] == ["child"]:
        child()
        return
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--redis-url", help="benchmark this Redis (default: a private redis-server)")
    p.add_argument("--imports", action="store_true", help="modules and RSS after the imports")
    p.add_argument("--callgrind", action="store_true", help="with --imports: instructions too")
    args = p.parse_args()
    if args.imports:
        imports(args)
        return
    parent(args)


if __name__ == "__main__":
    main()
