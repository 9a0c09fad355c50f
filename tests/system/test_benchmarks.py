"""The benchmark scripts run end to end on the test Redis with tiny N (shape only, no timings).

Tests never import ``benchmarks`` (the scripts build on ``tests.support``, not the reverse): the
scripts run as subprocesses, and their helper functions are checked in a child interpreter
started at the repository root (:func:`in_benchmarks`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks" / "bench.py"
TINY = ["--rounds", "1", "--n", "40", "--peer-n", "20", "--one-call-n", "10"]
TINY += ["--samples", "5", "--peer-samples", "3", "--quiet"]


def run_bench(redis_url: str, tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--redis-url", redis_url, "--json", str(out), *TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def in_benchmarks(code: str) -> str:
    """Run ``code`` in a child interpreter at the repository root, where ``benchmarks`` imports;
    its stdout (an assertion failing in it fails the test with the child's traceback)."""
    cmd = [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


#: bench.py's constants, and the peers an interpreter was found for (PEER_VENVS: a folder of
#: venvs, as --peer-venvs); read once, at collection.
FACTS = json.loads(
    in_benchmarks("""
        import json, os
        from benchmarks import bench
        extra = ["--peer-venvs", os.environ["PEER_VENVS"]] if os.environ.get("PEER_VENVS") else []
        args = bench.parse_args(["--systems", ",".join(bench.PEERS), *extra])
        found = bench.find_pythons(args, bench.PEERS)
        print(json.dumps({"peers": bench.PEERS, "bodies": bench.BODIES, "found": sorted(found)}))
    """)
)
PEERS: list[str] = FACTS["peers"]
BODIES: list[str] = FACTS["bodies"]


def peer_pythons(*systems: str) -> list[str]:
    """The peers among ``systems`` whose interpreter imports them."""
    return [s for s in systems if s in FACTS["found"]]


@pytest.mark.slow  # the whole table; bench.py end to end: test_big_drain_reports_the_time_ratio...
def test_taskforge_run_prints_the_table_and_writes_every_figure(
    redis_url: str, tmp_path: Path
) -> None:
    stdout, doc = run_bench(redis_url, tmp_path, "--systems", "taskforge")

    head = stdout.splitlines()[0]
    assert head.startswith("| figure | taskforge | best peer | tf / best |")
    assert "| drain no-op, jobs/s | " in stdout
    assert "| Redis bytes per waiting no-op job | " in stdout
    assert set(doc) >= {"machine", "config", "summary", "runs", "derived", "systems"}
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["redis_server"]
    assert doc["machine"]["lpush_us"]["sync_p50"] > 0
    summary = doc["summary"]
    for key in ("enqueue_sync", "enqueue_async", "enqueue_bulk", "latency", "startup"):
        assert "taskforge" in summary[key], key
    for body in BODIES:
        drain = summary[f"drain_{body}"]["taskforge"]
        assert drain["jobs"] == 40, body
        assert drain["jobs_per_s"] > 0 and drain["peak_rss_mib"] > 0
    noop = summary["drain_noop"]["taskforge"]
    assert noop["commands_per_job"] > noop["round_trips_per_job"] > 0
    assert noop["redis_bytes_per_waiting_job"] != 0
    assert (
        summary["enqueue_sync"]["taskforge"]["p99_us"]
        >= summary["enqueue_sync"]["taskforge"]["p50_us"]
    )
    assert summary["latency"]["taskforge"]["p99_ms"] >= summary["latency"]["taskforge"]["p50_ms"]
    assert 0 < summary["startup"]["taskforge"]["startup_s"] < 60
    assert 0 < summary["startup_cli"]["taskforge"]["startup_s"] < 60
    assert not [r for r in doc["runs"] if "error" in r]


def test_big_drain_reports_the_time_ratio_to_the_small_one(redis_url: str, tmp_path: Path) -> None:
    measures = "drain_noop,drain_big"
    _, doc = run_bench(
        redis_url, tmp_path, "--systems", "taskforge", "--big-n", "80", "--measures", measures
    )

    assert doc["summary"]["drain_big"]["taskforge"]["jobs"] == 80
    assert doc["derived"]["big_over_small_jobs_ratio"] == 2
    assert doc["derived"]["big_over_small_time_ratio"] > 0


@pytest.mark.slow
@pytest.mark.skipif(
    len(peer_pythons(*PEERS)) < len(PEERS),
    reason="peer venvs not installed (benchmarks/README.md, PEER_VENVS)",
)
def test_every_peer_runs_in_the_same_run_with_ratios_to_the_best(
    redis_url: str, tmp_path: Path
) -> None:
    extra = ["--peer-venvs", os.environ["PEER_VENVS"]] if os.environ.get("PEER_VENVS") else []
    stdout, doc = run_bench(redis_url, tmp_path, *extra)

    assert stdout.splitlines()[0].startswith("| figure | taskforge | huey | dramatiq |")
    summary = doc["summary"]
    for peer in PEERS:
        assert summary["drain_noop"][peer]["jobs"] == 20, peer
        assert summary["latency"][peer]["samples"] == 3, peer
        assert summary["startup"][peer]["startup_s"] > 0, peer
    assert summary["enqueue_sync"].get("arq") is None  # arq has no sync producer: not run
    assert not [r for r in doc["runs"] if "error" in r]


@pytest.mark.skipif(
    len(peer_pythons("arq", "rq")) < 2, reason="arq/rq not installed (benchmarks/README.md)"
)
def test_arq_and_rq_run_beside_taskforge(redis_url: str, tmp_path: Path) -> None:
    extra = ["--peer-venvs", os.environ["PEER_VENVS"]] if os.environ.get("PEER_VENVS") else []
    measures = "enqueue_sync,enqueue_async,drain_noop,latency"
    _, doc = run_bench(
        redis_url, tmp_path, "--systems", "taskforge,arq,rq", "--measures", measures, *extra
    )

    summary = doc["summary"]
    assert summary["drain_noop"]["rq"]["jobs"] == 20
    assert summary["enqueue_sync"]["rq"]["jobs_per_s"] > 0
    assert "unsupported" not in json.dumps(summary["enqueue_async"]["arq"])
    assert summary["latency"]["arq"]["samples"] == 3


def test_best_peer_is_the_highest_rate_or_the_lowest_cost() -> None:
    in_benchmarks("""
        from benchmarks import bench
        cells = {"taskforge": {"x": 5.0}, "huey": {"x": 3.0}, "saq": {"x": 9.0}, "rq": {}}

        assert bench.best_peer(cells, "x", bench.MAX) == ("saq", 9.0)
        assert bench.best_peer(cells, "x", bench.MIN) == ("huey", 3.0)
        assert bench.best_peer({"taskforge": {"x": 1.0}}, "x", bench.MAX) is None
    """)


def test_latency_percentiles_use_nearest_rank() -> None:
    in_benchmarks("""
        from benchmarks.runner import latency_result, percentile
        values = [float(v) for v in range(1, 101)]

        assert percentile(values, 50) == 50
        assert percentile(values, 99) == 99
        assert percentile([], 50) is None
        assert latency_result([0.001, 0.002])["p99_ms"] == 2.0
    """)


def test_summary_takes_medians_and_carries_unsupported_notes() -> None:
    in_benchmarks("""
        from benchmarks import bench
        raw = [
            {"measure": "m", "system": "taskforge", "round": i, "jobs_per_s": v, "jobs": 10}
            for i, v in enumerate([30.0, 10.0, 20.0])
        ]
        raw.append({"measure": "m", "system": "arq", "round": 1, "unsupported": "no sync"})

        summary = bench.summarise(raw)

        assert summary["m"]["taskforge"]["jobs_per_s"] == 20.0
        assert summary["m"]["taskforge"]["rounds"] == 3
        assert summary["m"]["arq"]["note"] == "no sync"
    """)


def test_unknown_system_is_refused(redis_url: str) -> None:
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--redis-url", redis_url, "--systems", "celery"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip

    assert proc.returncode != 0
    assert "unknown systems" in proc.stderr


def test_drain_is_timed_from_the_first_body_to_the_last() -> None:
    in_benchmarks("""
        import time
        from benchmarks.runner import Span, drain_result, cpu_s

        started, cpu_started = time.monotonic(), cpu_s()
        time.sleep(0.05)  # the worker's start: not part of the drain figure
        span = Span(3)
        for _ in range(3):
            span.begin()
            span.end()
        result = drain_result(span, started, cpu_started, jobs=99)

        assert span.done.is_set() and result["span"] == "bodies"
        assert result["jobs"] == 3
        assert result["seconds"] < 0.05 <= result["total_s"]
        assert result["start_to_first_ms"] >= 50

        idle = drain_result(Span(3), started, cpu_started, jobs=7)  # bodies ran elsewhere
        assert idle["span"] == "worker" and idle["jobs"] == 7
        assert idle["seconds"] == idle["total_s"]
    """)


def test_peak_rss_is_the_runner_own_not_its_parent() -> None:
    # ru_maxrss survives execve: a child of a 300 MB parent would report >= 300 MB.
    in_benchmarks("""
        import subprocess, sys
        ballast = b"x" * (300 * 2**20)
        code = "from benchmarks.runner import peak_rss_mib; print(peak_rss_mib())"
        child = float(subprocess.check_output([sys.executable, "-c", code], text=True))
        assert child < 150, child
        del ballast
    """)


def test_backlog_curves_run_end_to_end(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "backlog.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "backlog.py"), "--redis-url", redis_url]
    cmd += ["--depths", "200,400", "--queue-counts", "1,3", "--queue-total", "60", "--slice", "20"]
    cmd += ["--bulk-n", "20", "--one-call-n", "10", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())

    assert [p["depth"] for p in doc["depth"]] == [200, 400]
    for point in doc["depth"]:
        assert point["bytes_per_job"] > 0 and point["bulk_jobs_per_s"] > 0
        assert point["one_call_jobs_per_s"] > 0 and point["slice"] >= 20
        assert point["drain_jobs_per_s"] > 0
    assert [q["queues"] for q in doc["queues"]] == [1, 3]
    assert all(q["slice"] >= 20 and q["bulk_jobs_per_s"] > 0 for q in doc["queues"])
    assert "| queues | jobs | bytes / job |" in proc.stdout
