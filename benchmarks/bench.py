"""taskforge's benchmark: enqueue, drain with real job bodies, pickup latency, worker startup,
worker RSS, Redis bytes per waiting job and Redis CPU per job, side by side with Huey, Dramatiq,
taskiq, SAQ, BullMQ (its Python package), arq and RQ, in one run.

    python benchmarks/bench.py --quick              # private redis-server, one round (~3 min)
    python benchmarks/bench.py                      # 3 rounds
    python benchmarks/bench.py --full               # 5 rounds, bigger N, the 100,000-job run
    python benchmarks/bench.py --redis-url redis://127.0.0.1:6379/15 --systems taskforge

Every figure comes from a fresh subprocess (one per system and measurement; a drain is one
worker process). Rounds are interleaved (taskforge, huey, dramatiq, ..., taskforge, ...) and the
table shows medians, because a shared 2-core machine is noisy. Results go to
``benchmarks/results/`` as JSON.

Peers run in venvs of their own (arq pins ``redis<6``, which taskforge cannot import with):
``--peer-venvs DIR`` looks for ``DIR/<system>/bin/python`` (``DIR/arqrq`` for arq and RQ
together), ``--python SYSTEM=PATH`` names one, ``--peer-python`` is the old one-venv option for
arq and RQ. A peer whose interpreter cannot import it is skipped (said on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SYSTEMS = ("taskforge", "huey", "dramatiq", "taskiq", "saq", "bullmq", "arq", "rq")
PEERS = SYSTEMS[1:]
SCRIPTS = {s: f"peer_tasks_{s}.py" for s in PEERS} | {"taskforge": "taskforge_tasks.py"}
#: What a peer's interpreter must import.
MODULES = {
    "huey": "huey", "dramatiq": "dramatiq", "taskiq": "taskiq_redis", "saq": "saq",
    "bullmq": "bullmq", "arq": "arq", "rq": "rq",
}  # fmt: skip
#: Peers whose workers run plain functions in threads (their drains use sync job bodies).
THREAD_WORKERS = frozenset({"huey", "dramatiq", "rq"})
BODIES = ("noop", "incr", "sleep", "cpu")
#: runner.STAMP_SUFFIX (bench.py is also imported as ``benchmarks.bench``, without runner.py's
#: folder on the path).
STAMP_SUFFIX = ":stamps"
RUN_TIMEOUT_S = 900.0


# --------------------------------------------------------------------------- what to measure


@dataclass(frozen=True)
class Measure:
    """One row of the table: a workload, its options, and who runs it."""

    key: str
    label: str
    workload: str  # enqueue | drain | latency
    systems: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    rounds: int | None = None  # None: the run's --rounds


def plan(args: argparse.Namespace) -> list[Measure]:
    """The measurements of this run, scaled by --n/--peer-n/--samples, --quick and --full."""
    n, one, c = args.n, args.one_call_n, args.concurrency
    sync_peers = ("taskforge", "huey", "dramatiq", "rq")
    async_peers = ("taskforge", "taskiq", "saq", "bullmq", "arq")
    rows = [
        Measure("enqueue_sync", f"enqueue one call at a time, sync ({one})", "enqueue",
                sync_peers, {"mode": "sync", "n": one}),
        Measure("enqueue_async", f"enqueue one call at a time, asyncio ({one})", "enqueue",
                async_peers, {"mode": "async", "n": one}),
        Measure("enqueue_bulk", f"enqueue bulk, chunks of 1000 ({n})", "enqueue",
                ("taskforge", "rq", "bullmq"), {"mode": "bulk", "n": n}),
    ]  # fmt: skip
    for body in BODIES:
        jobs = min(n, args.cpu_n) if body == "cpu" else n
        label = f"drain, job body {body}, c={c} ({jobs}; peers {min(jobs, args.peer_n)})"
        options = {"kind": "async", "concurrency": c, "n": jobs, "body": body}
        rows.append(Measure(f"drain_{body}", label, "drain", SYSTEMS, options))
    rows += [
        Measure("latency", f"pickup latency, idle worker ({args.samples}; peers "
                f"{args.peer_samples})", "latency", SYSTEMS, {"samples": args.samples}),
        Measure("startup", "worker start -> first job", "startup", SYSTEMS, {"cli": False}),
        Measure("startup_cli", "`taskforge worker` start -> first job", "startup",
                ("taskforge",), {"cli": True}),
    ]  # fmt: skip
    if args.big_n:
        rows.append(
            Measure("drain_big", f"drain no-op, c={c} ({args.big_n})", "drain", ("taskforge",),
                    {"kind": "async", "concurrency": c, "n": args.big_n, "body": "noop"}, 1)
        )  # fmt: skip
    if args.uvloop:
        rows.append(
            Measure("drain_noop_uvloop", f"drain no-op, c={c}, uvloop ({n})", "drain",
                    ("taskforge",), {"kind": "async", "concurrency": c, "n": n, "uvloop": True,
                                     "body": "noop"})
        )  # fmt: skip
    return rows


# --------------------------------------------------------------------------- a private Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: apt-get install -y redis-server, or pass"
                         " --redis-url")  # fmt: skip
    port, folder = _free_port(), tempfile.mkdtemp(prefix="tf-bench-redis-")
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", ""]
    cmd += ["--appendonly", "no", "--protected-mode", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("private redis-server did not start") from None
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- running one figure


class Runner:
    """Starts system runners as subprocesses and reads their RESULT lines."""

    def __init__(self, url: str, pythons: dict[str, str], rq_worker: str, *, private: bool):
        self.url = url
        self.pythons = pythons
        self.rq_worker = rq_worker
        self.private = private
        self.redis = redis.Redis.from_url(url, decode_responses=True, socket_timeout=None)
        self._seq = 0
        # The runners' stderr (peers print shutdown noise) goes to a log next to the results.
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log = (RESULTS / "runners-stderr.log").open("a")

    def fresh_prefix(self) -> str:
        """A key namespace nobody used in this run."""
        self._seq += 1
        return f"tfb{os.getpid()}x{self._seq}"

    def _cmd(self, system: str, argv: list[str], wrap: tuple[str, ...] = ()) -> list[str]:
        python = self.pythons.get(system, sys.executable)
        return [python, *wrap, str(HERE / SCRIPTS[system]), *argv]

    def clean_slate(self) -> None:
        """Empty the private server between measurements, so a memory delta is only the jobs
        just written (earlier records expiring meanwhile would hide part of it). Never on a
        ``--redis-url`` server: that one may hold other people's data."""
        if self.private:
            self.redis.flushall()

    def used_memory(self) -> int:
        """Redis' ``used_memory`` (INFO memory), bytes."""
        return int(self.redis.info("memory")["used_memory"])

    def _env(self, prefix: str) -> dict[str, str]:
        env = {**os.environ, "REDIS_URL": self.url, "BENCH_PREFIX": prefix}
        env.update(TASKFORGE_PREFIX=prefix, TASKFORGE_RESULT_TTL="600", RQ_WORKER=self.rq_worker)
        env.pop("TASKFORGE_SIGNING_KEY", None)
        return env

    def start(
        self, system: str, prefix: str, argv: list[str], wrap: tuple[str, ...] = ()
    ) -> subprocess.Popen[str]:
        """Start a runner (``wrap``: arguments before the script, e.g. a profiler module)."""
        cmd = self._cmd(system, argv, wrap)
        return subprocess.Popen(cmd, env=self._env(prefix), stdout=subprocess.PIPE, text=True,
                                stderr=self.log)  # fmt: skip

    def profile_drain(self, n: int, out: Path) -> dict[str, Any]:
        """A taskforge drain (async, c=50) under pyinstrument; its text report goes to ``out``."""
        prefix = self.fresh_prefix()
        self.call("taskforge", prefix, ["fill", "--n", str(n)])
        wrap = ("-m", "pyinstrument", "-r", "text", "-o", str(out))
        argv = ["drain", "--n", str(n), "--concurrency", "50"]
        return self.finish(self.start("taskforge", prefix, argv, wrap))

    def call(self, system: str, prefix: str, argv: list[str]) -> dict[str, Any]:
        """Run a runner to its end; its RESULT."""
        return self.finish(self.start(system, prefix, argv))

    @staticmethod
    def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
        """Wait for a runner and parse its RESULT line."""
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
        for line in out.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
        raise RuntimeError(f"runner {proc.args!r} exited {proc.returncode} without a RESULT")

    def redis_cpu_s(self) -> float:
        """CPU time the Redis server has used (INFO cpu: user + system), s."""
        info = self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (INFO commandstats)."""
        info = self.redis.info("commandstats")
        return {name[len("cmdstat_") :]: int(v["calls"]) for name, v in info.items()}

    # ---------------------------------------------------------------- workloads

    def enqueue(self, system: str, opts: dict[str, Any]) -> dict[str, Any]:
        argv = ["enqueue", "--mode", opts["mode"], "--n", str(opts["n"])]
        return self.call(system, self.fresh_prefix(), argv)

    def drain(self, system: str, opts: dict[str, Any], n: int) -> dict[str, Any]:
        prefix, body = self.fresh_prefix(), opts["body"]
        kind = "sync" if system in THREAD_WORKERS else opts["kind"]
        self.clean_slate()
        memory = self.used_memory()
        filled = self.call(system, prefix, ["fill", "--n", str(n), "--kind", kind, "--body", body])
        if "unsupported" in filled:
            return filled
        waiting_bytes = (self.used_memory() - memory) / n
        argv = ["drain", "--n", str(n), "--concurrency", str(opts["concurrency"]), "--kind", kind]
        argv += ["--body", body]
        if system in {"taskforge", "arq", "rq"}:
            argv.append("--count-round-trips")
        if opts.get("uvloop"):
            argv.append("--uvloop")
        before, redis_cpu = self.commandstats(), self.redis_cpu_s()
        proc = self.start(system, prefix, argv)
        rss = RssSampler(proc.pid)
        result = self.finish(proc)
        rss.stop()
        redis_cpu, after = self.redis_cpu_s() - redis_cpu, self.commandstats()
        if "unsupported" in result:
            return result
        jobs = max(1, int(result["jobs"]))
        calls = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        calls["info"] = calls.get("info", 0) - 3  # ours: commandstats, cpu, cpu (not the last)
        result["commands_per_job"] = sum(calls.values()) / jobs
        result["redis_cpu_us_per_job"] = redis_cpu * 1e6 / jobs
        result["script_calls_per_job"] = (calls.get("evalsha", 0) + calls.get("eval", 0)) / jobs
        if result.get("round_trips") is not None:
            result["round_trips_per_job"] = result["round_trips"] / jobs
        result["top_commands"] = dict(sorted(calls.items(), key=lambda kv: -kv[1])[:8])
        result["rss_mib_over_time"] = rss.samples
        result["redis_bytes_per_waiting_job"] = waiting_bytes
        return result

    def startup(self, system: str, cli: bool) -> dict[str, Any]:
        """One job is queued; a worker process starts; seconds from its spawn to the job's
        first line (the job stamps ``time.monotonic()``, which is system-wide on Linux)."""
        prefix = self.fresh_prefix()
        self.clean_slate()
        self.call(system, prefix, ["kick"])
        if cli:
            argv = ["-m", "taskforge.cli", "worker", "taskforge_tasks:app", "-c", "100"]
            argv += ["--log-level", "ERROR"]
            started = time.monotonic()
            proc = subprocess.Popen([sys.executable, *argv], env=self._env(prefix), cwd=HERE,
                                    stdout=subprocess.DEVNULL, stderr=self.log)  # fmt: skip
        else:
            started = time.monotonic()
            proc = self.start(system, prefix, ["serve", "--concurrency", "100"])
        try:
            reply = self.redis.blpop([prefix + STAMP_SUFFIX], timeout=60)
            if reply is None:
                raise RuntimeError(f"{system}: the first job did not start within 60 s")
            return {"startup_s": float(reply[1]) - started}
        finally:
            _stop(proc)

    def latency(self, system: str, samples: int) -> dict[str, Any]:
        prefix = self.fresh_prefix()
        self.clean_slate()
        server = self.start(system, prefix, ["serve", "--concurrency", "100"])
        try:
            return self.call(system, prefix, ["latency", "--samples", str(samples)])
        finally:
            _stop(server)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


class RssSampler:
    """Samples a process's resident set size (VmRSS) every 0.1 s while it runs."""

    def __init__(self, pid: int, every_s: float = 0.1):
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        path = Path(f"/proc/{self.pid}/status")
        while not self._stop.wait(every_s):
            try:
                text = path.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.append(round(int(line.split()[1]) / 1024, 1))

    def stop(self) -> None:
        """Stop sampling (the process has ended)."""
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------- the run


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self.started = time.monotonic()

    def step(self, what: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * self.done / max(1, self.total))
        elapsed = time.monotonic() - self.started
        bar = "#" * filled + "." * (width - filled)
        line = f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s  {what}"
        sys.stderr.write(line[:120].ljust(120))
        sys.stderr.flush()

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 120 + "\r")
            sys.stderr.flush()


def run_all(
    args: argparse.Namespace, runner: Runner, systems: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Every measurement, rounds interleaved across systems; the raw results."""
    rows = plan(args)
    if args.measures:
        wanted = expand_measures(args.measures)
        rows = [m for m in rows if wanted is None or m.key in wanted]
    schedule: list[tuple[int, Measure, str]] = []
    for r in range(args.rounds):
        for m in rows:
            if r < (m.rounds or args.rounds):
                schedule += [(r, m, s) for s in m.systems if s in systems]
    progress = Progress(len(schedule), enabled=not args.quiet)
    raw: list[dict[str, Any]] = []
    for rnd, m, system in schedule:
        progress.step(f"{m.key} · {system} · round {rnd + 1}")
        started = time.monotonic()
        try:
            result = _measure(args, runner, m, system)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            result = {"error": str(exc)}
        result["wall_s"] = round(time.monotonic() - started, 2)
        raw.append({"measure": m.key, "system": system, "round": rnd + 1, **result})
        progress.advance()
    progress.close()
    return raw


#: Named groups for ``--measures`` (a group and single keys can be mixed: ``drains,latency``).
MEASURE_GROUPS = {
    "enqueue": ("enqueue_sync", "enqueue_async", "enqueue_bulk"),
    "drains": tuple(f"drain_{b}" for b in BODIES),
    # Worker and Redis CPU per job, commands per job, bytes per waiting job, worker RSS, start.
    "costs": ("drain_noop", "drain_incr", "startup", "startup_cli"),
    "all": (),  # every measure of the plan
}


def expand_measures(spec: str) -> set[str] | None:
    """The measure keys a ``--measures`` value names (None: all)."""
    keys: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if item == "all":
            return None
        keys.update(MEASURE_GROUPS.get(item, (item,)))
    return keys


def _measure(args: argparse.Namespace, runner: Runner, m: Measure, system: str) -> dict[str, Any]:
    peer = system != "taskforge"
    if m.workload == "enqueue":
        return runner.enqueue(system, m.options)
    if m.workload == "drain":
        n = min(m.options["n"], args.peer_n) if peer else m.options["n"]
        return runner.drain(system, m.options, n)
    if m.workload == "startup":
        return runner.startup(system, m.options["cli"])
    return runner.latency(system, args.peer_samples if peer else m.options["samples"])


# --------------------------------------------------------------------------- summary and table


NUMERIC = (
    "jobs_per_s", "seconds", "cpu_us_per_job", "redis_cpu_us_per_job", "p50_ms", "p99_ms",
    "max_ms", "peak_rss_mib", "commands_per_job", "script_calls_per_job", "round_trips_per_job",
    "samples", "redis_bytes_per_waiting_job", "startup_s", "p50_us", "p99_us", "start_to_first_ms",
    "total_s", "process_cpu_us_per_job",
)  # fmt: skip


def summarise(raw: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Medians per measurement and system (errors and 'unsupported' carried through)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for r in raw:
        out.setdefault(r["measure"], {}).setdefault(r["system"], {"runs": []})["runs"].append(r)
    for systems in out.values():
        for summary in systems.values():
            runs = summary.pop("runs")
            ok = [r for r in runs if "error" not in r and "unsupported" not in r]
            if not ok:
                summary["note"] = runs[0].get("unsupported") or runs[0].get("error", "")
                summary["failed"] = "error" in runs[0]
                continue
            summary["rounds"] = len(ok)
            for name in NUMERIC:
                values = [r[name] for r in ok if r.get(name) is not None]
                if values:
                    summary[name] = statistics.median(values)
            if ok[0].get("jobs") is not None:
                summary["jobs"] = ok[0]["jobs"]
            if ok[-1].get("rss_mib_over_time"):
                summary["rss_mib_over_time"] = _thin(ok[-1]["rss_mib_over_time"], 12)
            if ok[-1].get("top_commands"):
                summary["top_commands"] = ok[-1]["top_commands"]
    return out


def _thin(values: list[float], keep: int) -> list[float]:
    if len(values) <= keep:
        return values
    step = (len(values) - 1) / (keep - 1)
    return [values[round(i * step)] for i in range(keep)]


MAX, MIN = "higher", "lower"
ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    # (measure, field, label, which is better, target)
    ("enqueue_sync", "jobs_per_s", "enqueue one call, sync, jobs/s", MAX, ">= 1.5x Huey"),
    ("enqueue_sync", "p50_us", "enqueue one call, sync, p50 us", MIN, "<= 1.3x LPUSH"),
    ("enqueue_async", "jobs_per_s", "enqueue one call, asyncio, jobs/s", MAX, ""),
    ("enqueue_async", "p50_us", "enqueue one call, asyncio, p50 us", MIN, "<= 1.3x LPUSH"),
    ("enqueue_bulk", "jobs_per_s", "enqueue bulk, jobs/s", MAX, ">= 50,000"),
    ("drain_noop", "jobs_per_s", "drain no-op, jobs/s", MAX, ">= 17,000"),
    ("drain_incr", "jobs_per_s", "drain 1 Redis INCR, jobs/s", MAX, ">= 3x best"),
    ("drain_sleep", "jobs_per_s", "drain 1 ms sleep, jobs/s", MAX, ">= 3x best"),
    ("drain_cpu", "jobs_per_s", "drain 1 ms CPU, jobs/s", MAX, ">= 3x best"),
    ("drain_noop_uvloop", "jobs_per_s", "drain no-op under uvloop, jobs/s", MAX, ""),
    ("drain_big", "jobs_per_s", "drain no-op, big N, jobs/s", MAX, ""),
    ("drain_noop", "start_to_first_ms", "drain: worker built -> first job, ms", MIN, ""),
    ("drain_noop", "cpu_us_per_job", "worker CPU per no-op job, us", MIN, ""),
    ("drain_incr", "cpu_us_per_job", "worker CPU per INCR job, us", MIN, ""),
    ("drain_noop", "redis_cpu_us_per_job", "Redis CPU per no-op job, us", MIN, ""),
    ("drain_incr", "redis_cpu_us_per_job", "Redis CPU per INCR job, us", MIN, ""),
    ("drain_noop", "commands_per_job", "Redis commands per no-op job (incl. Lua)", MIN, ""),
    ("drain_noop", "redis_bytes_per_waiting_job", "Redis bytes per waiting no-op job", MIN,
     "<= 200"),
    ("latency", "p50_ms", "pickup latency p50, ms", MIN, "<= 1.1x RTT + start"),
    ("latency", "p99_ms", "pickup latency p99, ms", MIN, "<= 2"),
    ("startup", "startup_s", "worker start -> first job, s", MIN, "<= 0.3"),
    ("startup_cli", "startup_s", "`taskforge worker` start -> first job, s", MIN, "<= 0.3"),
    ("drain_noop", "peak_rss_mib", "worker peak RSS, MiB", MIN, "<= 40"),
    ("drain_big", "peak_rss_mib", "worker peak RSS after big N, MiB", MIN, "flat"),
)  # fmt: skip


def derived(summary: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Figures computed from two measurements (the big / small drain time ratio)."""
    out: dict[str, Any] = {}
    small = summary.get("drain_noop", {}).get("taskforge", {})
    big = summary.get("drain_big", {}).get("taskforge", {})
    if small.get("seconds") and big.get("seconds") and small.get("jobs") and big.get("jobs"):
        out["big_over_small_time_ratio"] = big["seconds"] / small["seconds"]
        out["big_over_small_jobs_ratio"] = big["jobs"] / small["jobs"]
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value[:14]
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def _cell(summary: dict[str, Any] | None, name: str) -> str:
    if not summary:
        return "-"
    if "note" in summary:  # the JSON keeps the whole message
        return "ERROR" if summary.get("failed") else "n/a"
    return _fmt(summary.get(name))


def best_peer(cells: dict[str, dict[str, Any]], name: str, better: str) -> tuple[str, float] | None:
    """The peer with the best median of ``name`` (None: no peer measured it)."""
    values = [(s, c[name]) for s, c in cells.items() if s != "taskforge" and c.get(name)]
    if not values:
        return None
    pick = max if better == MAX else min
    return pick(values, key=lambda sv: sv[1])


def _ratio(tf: float | None, peer: float | None) -> str:
    if not tf or not peer:
        return "-"
    r = tf / peer
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def table(summary: dict[str, dict[str, dict[str, Any]]], systems: tuple[str, ...]) -> str:
    """The medians as a markdown table: every system, the best peer, taskforge / best peer."""
    head = ["figure", *systems, "best peer", "tf / best", "better", "target"]
    lines: list[list[str]] = [head]
    for key, name, label, better, target in ROWS:
        if key not in summary:
            continue
        cells = summary[key]
        tf = cells.get("taskforge", {}).get(name)
        row = [label, *(_cell(cells.get(s), name) for s in systems)]
        best = best_peer(cells, name, better)
        row += [best[0] if best else "-", _ratio(tf, best[1] if best else None), better, target]
        lines.append(row)
    text = ["| " + " | ".join(r) + " |" for r in lines]
    text.insert(1, "|" + "---|" * len(head))
    return "\n".join(text)


def idle_ping_ms(runner: Runner, samples: int = 200, gap_s: float = 0.015) -> dict[str, float]:
    """One PING after the same idle gap as the latency samples: the floor a pickup (three
    sequential wake-ups: producer -> Redis -> worker -> Redis -> worker) is built from."""
    gaps: list[float] = []
    for _ in range(samples):
        time.sleep(gap_s)
        sent = time.monotonic()
        runner.redis.ping()
        gaps.append((time.monotonic() - sent) * 1000)
    gaps.sort()
    return {"p50": gaps[len(gaps) // 2], "p99": gaps[int(len(gaps) * 0.99) - 1]}


def machine(runner: Runner, pythons: dict[str, str]) -> dict[str, Any]:
    """What the figures were measured on."""
    info = runner.redis.info("server")
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:  # pragma: no cover - older redis-py
        HIREDIS_AVAILABLE = False
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis_server": info.get("redis_version"),
        "redis_py": redis.__version__,
        "hiredis": HIREDIS_AVAILABLE,
        "peer_pythons": pythons,
        "peer_versions": {s: _versions(py, s) for s, py in pythons.items()},
        "load_avg_at_end": os.getloadavg(),
        "idle_ping_ms": idle_ping_ms(runner),
        "lpush_us": lpush_us(runner),
    }


def lpush_us(runner: Runner, n: int = 2000) -> dict[str, float]:
    """A raw ``LPUSH`` round trip on a warm connection, blocking and asyncio, p50 in us: the
    floor a one-call enqueue is compared with."""
    key = runner.fresh_prefix() + ":lpush"
    sync_us = _p50_us(lambda: runner.redis.lpush(key, "x"), n)

    async def _async() -> float:
        client = redis.asyncio.Redis.from_url(runner.url)
        await client.ping()
        gaps = []
        for _ in range(n):
            started = time.perf_counter()
            await client.lpush(key, "x")
            gaps.append(time.perf_counter() - started)
        await client.aclose()
        return statistics.median(gaps) * 1e6

    async_us = asyncio.run(_async())
    runner.redis.delete(key)
    return {"sync_p50": sync_us, "async_p50": async_us}


def _p50_us(call: Any, n: int) -> float:
    call()
    gaps = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        gaps.append(time.perf_counter() - started)
    return statistics.median(gaps) * 1e6


def _versions(python: str, system: str) -> dict[str, str]:
    dist = {"taskiq": ("taskiq", "taskiq-redis"), "arqrq": ("arq", "rq")}.get(system, (system,))
    code = (
        "import json, importlib.metadata as m\n"
        f"print(json.dumps({{p: m.version(p) for p in {(*dist, 'redis')!r}}}))"
    )
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
        versions: dict[str, str] = json.loads(out.stdout) if out.returncode == 0 else {}
        return versions
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def find_pythons(args: argparse.Namespace, systems: tuple[str, ...]) -> dict[str, str]:
    """An interpreter for each peer that can import it; peers without one are left out."""
    named = dict(item.split("=", 1) for item in args.python)
    legacy = args.peer_python or os.environ.get("TASKFORGE_BENCH_PEER_PYTHON")
    found: dict[str, str] = {}
    for system in systems:
        if system == "taskforge":
            continue
        candidates = [named.get(system)]
        if args.peer_venvs:
            venvs = Path(args.peer_venvs)
            candidates += [str(venvs / system / "bin" / "python")]
            candidates += [str(venvs / "arqrq" / "bin" / "python")] * (system in {"arq", "rq"})
        candidates += [legacy, sys.executable]
        for candidate in candidates:
            if candidate and Path(candidate).exists() and _imports(candidate, MODULES[system]):
                found[system] = candidate
                break
        else:
            print(f"{system}: no interpreter imports {MODULES[system]} (--peer-venvs, --python"
                  f" {system}=PATH): skipped", file=sys.stderr)  # fmt: skip
    return found


def _imports(python: str, module: str) -> bool:
    probe = subprocess.run([python, "-c", f"import {module}"], capture_output=True, timeout=60)
    return probe.returncode == 0


# --------------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--redis-url", help="benchmark this Redis (default: a private redis-server)")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset")
    measures_help = "comma-separated figures or groups: " + ", ".join(MEASURE_GROUPS)
    p.add_argument("--measures", help=measures_help + " (e.g. drain_noop,latency)")
    p.add_argument("--peer-venvs", help="folder of peer venvs: DIR/<system>/bin/python")
    p.add_argument("--python", action="append", default=[], metavar="SYSTEM=PATH",
                   help="the interpreter of one peer (repeatable)")  # fmt: skip
    p.add_argument("--peer-python", help="one interpreter with arq and rq installed (old form)")
    rq_help = "RQ worker class: SimpleWorker (default, faster) or the forking Worker"
    p.add_argument("--rq-worker", choices=["simple", "fork"], default="simple", help=rq_help)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n", type=int, default=30_000, help="jobs per drain and bulk enqueue")
    p.add_argument("--peer-n", type=int, default=6_000, help="jobs per peer drain (slower peers)")
    cpu_help = "at most this many jobs per 1 ms CPU drain (<= 1,000 jobs/s on one core)"
    p.add_argument("--cpu-n", type=int, default=2_000, help=cpu_help)
    p.add_argument("--one-call-n", type=int, default=2_000, help="jobs per one-at-a-time enqueue")
    c_help = "jobs at once per worker (thread peers: at most 16 threads; RQ: 1)"
    p.add_argument("--concurrency", type=int, default=100, help=c_help)
    p.add_argument("--samples", type=int, default=500, help="latency samples (taskforge)")
    p.add_argument("--peer-samples", type=int, default=200, help="latency samples (peers)")
    p.add_argument("--big-n", type=int, default=0, help="also drain this many (RSS, scaling)")
    p.add_argument("--uvloop", action="store_true", help="also drain under uvloop")
    quick_help = "one round, small N: every figure in a few minutes"
    p.add_argument("--quick", action="store_true", help=quick_help)
    full_help = "5 rounds, peers at --n, and a 100,000-job drain (tens of minutes)"
    p.add_argument("--full", action="store_true", help=full_help)
    p.add_argument("--json", type=Path, help="write results here (default: results/<time>.json)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--profile", action="store_true", help="also profile a drain (pyinstrument)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.n, args.peer_n, args.one_call_n = 1, 20_000, 4_000, 1_000
        args.cpu_n = min(args.cpu_n, 1_000)
        args.samples, args.peer_samples = 200, 100
    if args.full:
        args.rounds = max(args.rounds, 5)
        args.peer_n = args.n
        args.big_n = args.big_n or 100_000
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the table; write and return the JSON document."""
    args = parse_args(argv)
    systems = tuple(s for s in args.systems.split(",") if s)
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {SYSTEMS}")
    pythons = find_pythons(args, systems)
    systems = tuple(s for s in systems if s == "taskforge" or s in pythons)
    with _redis(args.redis_url) as url:
        runner = Runner(url, pythons, args.rq_worker, private=args.redis_url is None)
        started = time.time()
        raw = run_all(args, runner, systems)
        if args.profile:
            profile = RESULTS / time.strftime("profile-drain-%Y%m%d-%H%M%S.txt")
            profile.parent.mkdir(parents=True, exist_ok=True)
            runner.profile_drain(args.n, profile)
            print(f"pyinstrument profile of a {args.n}-job drain: {profile}", file=sys.stderr)
        summary = summarise(raw)
        doc: dict[str, Any] = {
            "started": started,
            "wall_s": round(time.time() - started, 1),
            "machine": machine(runner, pythons),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "systems": list(systems),
            "summary": summary,
            "derived": derived(summary),
            "runs": raw,
        }
    print(table(summary, systems))
    for name, value in doc["derived"].items():
        print(f"{name}: {value:.2f}")
    ping, lpush = doc["machine"]["idle_ping_ms"], doc["machine"]["lpush_us"]
    print(f"Redis PING after 15 ms idle: p50 {ping['p50']:.2f} ms, p99 {ping['p99']:.2f} ms")
    print(f"raw LPUSH round trip p50: {lpush['sync_p50']:.0f} us (redis-py),"
          f" {lpush['async_p50']:.0f} us (redis.asyncio)")  # fmt: skip
    path = args.json or RESULTS / time.strftime("bench-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"results: {path} ({doc['wall_s']:.0f}s)")
    return doc


@contextmanager
def _redis(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with private_redis() as private:
        yield private


if __name__ == "__main__":
    main()
