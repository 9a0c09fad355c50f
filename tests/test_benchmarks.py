"""The benchmark scripts run end to end on the test Redis with tiny N (shape only, no timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench
from benchmarks.runner import latency_result, percentile

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"
TINY = ["--rounds", "1", "--n", "40", "--peer-n", "20", "--one-call-n", "10"]
TINY += ["--samples", "5", "--peer-samples", "3", "--quiet"]


def run_bench(redis_url: str, tmp_path: Path, *extra: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(BENCH), "--redis-url", redis_url, "--json", str(out), *TINY, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def peer_python() -> str | None:
    return bench.find_peer_python(None)


def test_taskforge_run_prints_the_table_and_writes_every_figure(
    redis_url: str, tmp_path: Path
) -> None:
    stdout, doc = run_bench(redis_url, tmp_path, "--systems", "taskforge")

    assert stdout.splitlines()[0].split()[:2] == ["figure", "taskforge"]
    assert "drain_async_c50 jobs/s" in stdout
    assert set(doc) >= {"machine", "config", "summary", "runs", "derived", "systems"}
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["redis_server"]
    summary = doc["summary"]
    for key in ("enqueue_sync", "enqueue_async", "enqueue_bulk", "drain_sync_c50", "latency"):
        assert "taskforge" in summary[key], key
    drain = summary["drain_async_c50"]["taskforge"]
    assert drain["jobs"] == 40
    assert drain["jobs_per_s"] > 0 and drain["peak_rss_mib"] > 0
    assert drain["commands_per_job"] > drain["round_trips_per_job"] > 0
    assert summary["drain_sync_c50"]["taskforge"]["jobs"] == 40
    assert summary["latency"]["taskforge"]["p99_ms"] >= summary["latency"]["taskforge"]["p50_ms"]
    assert not [r for r in doc["runs"] if "error" in r]


def test_big_drain_reports_the_time_ratio_to_the_small_one(redis_url: str, tmp_path: Path) -> None:
    _, doc = run_bench(redis_url, tmp_path, "--systems", "taskforge", "--big-n", "80")

    assert doc["summary"]["drain_async_big"]["taskforge"]["jobs"] == 80
    assert doc["derived"]["big_over_small_jobs_ratio"] == 2
    assert doc["derived"]["big_over_small_time_ratio"] > 0


@pytest.mark.skipif(peer_python() is None, reason="arq/rq not installed (the bench extra)")
def test_peers_run_in_the_same_run_with_ratios(redis_url: str, tmp_path: Path) -> None:
    stdout, doc = run_bench(redis_url, tmp_path)

    assert "tf/arq" in stdout.splitlines()[0] and "tf/rq" in stdout.splitlines()[0]
    summary = doc["summary"]
    assert summary["drain_async_c50"]["arq"]["jobs"] == 20
    assert summary["drain_sync_c50"]["rq"]["jobs"] == 20
    assert summary["enqueue_sync"]["rq"]["jobs_per_s"] > 0
    assert "unsupported" not in json.dumps(summary["enqueue_async"]["arq"])
    assert summary["enqueue_sync"].get("arq") is None  # arq has no sync producer: not run
    assert summary["latency"]["arq"]["samples"] == 3


def test_latency_percentiles_use_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([], 50) is None
    assert latency_result([0.001, 0.002])["p99_ms"] == 2.0


def test_summary_takes_medians_and_carries_unsupported_notes() -> None:
    raw = [
        {"measure": "m", "system": "taskforge", "round": i, "jobs_per_s": v, "jobs": 10}
        for i, v in enumerate([30.0, 10.0, 20.0])
    ]
    raw.append({"measure": "m", "system": "arq", "round": 1, "unsupported": "no sync"})

    summary = bench.summarise(raw)

    assert summary["m"]["taskforge"]["jobs_per_s"] == 20.0
    assert summary["m"]["taskforge"]["rounds"] == 3
    assert summary["m"]["arq"]["note"] == "no sync"


def test_unknown_system_is_refused(redis_url: str) -> None:
    env = {**os.environ}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--redis-url", redis_url, "--systems", "celery"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip

    assert proc.returncode != 0
    assert "unknown systems" in proc.stderr
