"""The examples run as users run them: ``python examples/<name>.py``, as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEED_QUEUE = ROOT / "examples" / "seed_queue.py"


def run_example(path: Path, **env: str) -> str:
    """Run an example with ``env`` added; returns its output and requires exit code 0."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASKFORGE_"))}
    full_env.update(env)
    proc = subprocess.run(
        [sys.executable, str(path)],
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def check_seed_queue_output(out: str) -> None:
    lines = out.splitlines()
    assert "queue size: 3 (high: 1), scheduled: 1" in lines
    # HIGH (email) first, then NORMAL (workflow), then LOW (cache); the retried email last.
    order = next(line for line in lines if line.startswith("run order: "))
    assert order == (
        "run order: email.send ops@example.com (attempt 1); workflow.execute 123; "
        "cache.warm 3 keys; email.send ops@example.com (attempt 2)"
    )
    assert (
        "workflow.execute: Status: succeeded, Attempts: 1, Result: "
        "{'workflow_id': '123', 'tenant_id': 'tenant-1', 'steps': 3}"
    ) in lines
    assert any(line.startswith("email.send: Status: succeeded, Attempts: 2") for line in lines)
    assert "cache.warm: Status: succeeded, Attempts: 1, Result: 3" in lines
    assert "data.cleanup: Status: scheduled, Attempts: 0, Result: None" in lines
    assert "worker: 3 succeeded, 1 retried, 0 dead" in lines
    assert "still scheduled: 1" in lines


def test_seed_queue_example_runs_on_the_embedded_server_by_default() -> None:
    out = run_example(SEED_QUEUE)

    assert out.splitlines()[0] == "Redis: memory://"
    check_seed_queue_output(out)


def test_seed_queue_example_runs_with_redis_url_memory() -> None:
    out = run_example(SEED_QUEUE, REDIS_URL="memory://")

    check_seed_queue_output(out)


def test_seed_queue_example_runs_on_real_redis(redis_url: str, prefix: str) -> None:
    out = run_example(SEED_QUEUE, REDIS_URL=redis_url, TASKFORGE_PREFIX=prefix)

    assert out.splitlines()[0].startswith("Redis: redis://")
    check_seed_queue_output(out)


def test_task_redis_example_counts_through_the_workers_clients() -> None:
    out = run_example(ROOT / "examples" / "task_redis.py")

    assert out.splitlines()[-1] == "counts: [1, 1, 2]"
