"""Where the server's time of a one-job enqueue goes: Redis-side cost per script call.

    python benchmarks/script_cost.py                      # private redis-server, N = 5,000
    python benchmarks/script_cost.py --variant old=/tmp/enqueue_old.lua --n 20000 --rounds 5
    python benchmarks/script_cost.py --callgrind --n 500  # instructions per call (valgrind)

For each variant of the enqueue script (``current`` = the package's ``enqueue.lua`` with the
prelude, as the broker loads it; ``--variant name=path`` adds a body from a file, the prelude
prepended the same way) it sends N one-job ``EVALSHA`` calls with the arguments a ``.delay()``
sends (a fresh id each, a real envelope from ``Client.encode``) on a raw redis-py connection.

Default mode: after ``CONFIG RESETSTAT``, ``INFO commandstats`` gives ``usec_per_call`` of
``evalsha`` (the whole script, its commands included) and of each command the script ran. Those
are wall-clock µs inside the server: on a loaded host they inflate with preemption.

``--callgrind``: the redis-server runs under ``valgrind --tool=callgrind`` and the figure is the
server's instructions per call (parsing the request included: ``readQueryFromClient``,
inclusive), which no other load on the host changes: the way to compare variants on a busy
machine. Needs valgrind; about a minute per variant at N = 500. It then prices a one-job
``fetch`` and its one-job ``finish`` (the package's scripts) the same way.

Probes price the parts: ``return 1`` with the same KEYS/ARGV (Redis' fixed cost of a script
call with 19 arguments), the prelude followed by ``return 1`` (its per-call setup), the
current script with no events channel (no event), and ``LPUSH`` for the floor.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import _free_port, private_redis

from taskforge import Settings, Taskforge
from taskforge.driver.requests import ScriptCall
from taskforge.job import JobStatus
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import Outcome
from taskforge.protocol.scripts import SOURCES, _with_prelude

Send = Callable[[int], None]


def _variants(specs: list[str]) -> dict[str, str]:
    prelude = (resources.files("taskforge.protocol") / "lua" / "_prelude.lua").read_text()
    variants = {
        "return 1 (same KEYS/ARGV)": "return 1",
        "prelude + return 1": _with_prelude(prelude, "return 1"),
        "current": SOURCES["enqueue"],
    }
    for spec in specs:
        name, _, path = spec.partition("=")
        variants[name] = _with_prelude(prelude, Path(path).read_text())
    return variants


def _enqueue_call(app: Taskforge) -> ScriptCall:
    """The script call of one ``noop.delay(1, "two")``."""
    _, job = app.client.encode(app.registry.get("bench.noop").s(1, "two"))
    gen = Ops(app.settings).enqueue("default", [job])
    call = next(gen)
    gen.close()
    assert isinstance(call, ScriptCall)
    return call


def _senders(r: redis.Redis, call: ScriptCall, variants: dict[str, str]) -> dict[str, Send]:
    """One function per row: sends n calls of that variant (fresh ids, a fresh token each)."""
    keys, base = list(call.keys), list(call.args)

    def script(source: str, channel: str) -> Send:
        def send(n: int) -> None:
            sha = r.script_load(source)
            for i in range(n):
                args = [channel, base[1], os.urandom(8).hex(), f"{base[3]}-{time.time_ns()}-{i}"]
                r.evalsha(sha, len(keys), *keys, *args, *base[4:])

        return send

    rows = {name: script(source, base[0]) for name, source in variants.items()}
    rows["current, no events channel"] = script(variants["current"], "")

    def lpush(n: int) -> None:
        for _ in range(n):
            r.lpush("sc:floor", "x")

    rows["LPUSH (floor)"] = lpush
    return rows


def commandstats(r: redis.Redis, rows: dict[str, Send], n: int, rounds: int) -> None:
    """Wall-clock µs inside the server, from INFO commandstats."""
    per_row: dict[str, list[float]] = {}
    inner: dict[str, str] = {}
    for _ in range(rounds):
        for name, send in rows.items():
            r.flushdb()
            r.config_resetstat()
            send(n)
            stats = r.info("commandstats")
            top = stats.get("cmdstat_evalsha") or stats["cmdstat_lpush"]
            per_row.setdefault(name, []).append(top["usec_per_call"])
            ran = [(k[8:], v) for k, v in sorted(stats.items()) if k not in
                   ("cmdstat_evalsha", "cmdstat_config|resetstat", "cmdstat_flushdb",
                    "cmdstat_script|load", "cmdstat_info")]  # fmt: skip
            inner[name] = ", ".join(f"{c} {v['calls'] / n:.0f} x {v['usec_per_call']:.2f}"
                                    for c, v in ran)  # fmt: skip
    print(f"load average {os.getloadavg()}, N = {n}, rounds = {rounds}")
    print("| call | Redis µs per call, min | median | commands it ran (per call x µs) |")
    print("|---|---|---|---|")
    for name, values in per_row.items():
        print(f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | {inner[name]} |")


@contextmanager
def callgrind_redis(folder: Path) -> Iterator[tuple[str, int]]:
    """A redis-server under callgrind, instrumentation off until asked; yields (url, pid)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--callgrind needs valgrind (apt-get install -y valgrind)")
    port = _free_port()
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
           f"--callgrind-out-file={folder}/cg.%p", "redis-server", "--port", str(port),
           "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
           "--appendonly", "no"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("redis-server under valgrind did not start") from None
                time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(60)


def _instructions(dump: Path, n: int) -> float:
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(dump)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    match = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\S*readQueryFromClient", out, re.M)
    return int(match.group(1).replace(",", "")) / n if match else float("nan")


def callgrind(r: redis.Redis, pid: int, folder: Path, rows: dict[str, Send], n: int) -> None:
    """Server instructions per call, from callgrind dumps around each row."""

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    print(f"N = {n}; redis-server instructions per call (request parsing included)")
    print("| call | instructions per call |")
    print("|---|---|")
    for index, (name, send) in enumerate(rows.items(), start=1):
        r.flushdb()
        send(50)  # warm: the script loaded and compiled, allocator pools grown
        control("-i", "on")
        control("-z")
        send(n)
        control("-d", f"row{index}")
        control("-i", "off")
        dump = next(folder.glob(f"cg.{pid}.{index}"))
        print(f"| {name} | {_instructions(dump, n):,.0f} |")


def fetch_finish(app: Taskforge, r: redis.Redis, pid: int, folder: Path, n: int) -> None:
    """Server instructions of a one-job fetch, then of its one-job finish (the package's
    scripts), jobs queued beforehand."""
    ops = Ops(app.settings)
    fetch_sha, finish_sha = r.script_load(SOURCES["fetch"]), r.script_load(SOURCES["finish"])

    def fetch() -> tuple[str, str]:
        gen = ops.fetch("default", 1, "w1")
        call = next(gen)
        gen.close()
        assert isinstance(call, ScriptCall)
        out = r.evalsha(fetch_sha, len(call.keys), *call.keys, *call.args)
        return out[2], str(out[3])  # per job: id, lease token, ...

    def finish(job_id: str, token: str) -> None:
        done = Outcome(job_id, token, JobStatus.SUCCEEDED, result_json="3", duration_ms=1)
        gen = ops.finish("default", [done])
        call = next(gen)
        gen.close()
        assert isinstance(call, ScriptCall)
        assert r.evalsha(finish_sha, len(call.keys), *call.keys, *call.args) == [1]

    def control(*args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    r.flushdb()
    noop = app.registry.get("bench.noop")
    app.enqueue_many([noop.s(1, "two") for _ in range(n + 20)])
    for _ in range(20):
        finish(*fetch())
    dumps = len(list(folder.glob(f"cg.{pid}.*")))
    control("-i", "on")
    control("-z")
    leases = [fetch() for _ in range(n)]
    control("-d", "fetch")
    control("-z")
    for lease in leases:
        finish(*lease)
    control("-d", "finish")
    control("-i", "off")
    for index, name in ((dumps + 1, "fetch (one job)"), (dumps + 2, "finish (one job)")):
        dump = next(folder.glob(f"cg.{pid}.{index}"))
        print(f"| {name} | {_instructions(dump, n):,.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], help="name=path.lua (a body)")
    parser.add_argument("--callgrind", action="store_true", help="instructions, under valgrind")
    args = parser.parse_args(argv)
    variants = _variants(args.variant)
    folder = Path(tempfile.mkdtemp(prefix="tf-script-cost-"))
    server = callgrind_redis(folder) if args.callgrind else private_redis()
    with server as started:
        url, pid = started if isinstance(started, tuple) else (started, 0)
        app = Taskforge(Settings(redis_url=url, prefix="sc"))

        @app.task(name="bench.noop", max_retries=0)
        def noop(a: int, b: str) -> None:
            """Does nothing."""

        r = redis.Redis.from_url(url, decode_responses=True)
        rows = _senders(r, _enqueue_call(app), variants)
        if args.callgrind:
            callgrind(r, pid, folder, rows, args.n)
            fetch_finish(app, r, pid, folder, args.n)
        else:
            commandstats(r, rows, args.n, args.rounds)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
