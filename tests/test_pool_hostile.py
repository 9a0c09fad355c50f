"""Hostile tasks in real ``taskforge worker --pool process`` subprocesses on a real Redis:
user code that forks, replaces the child's signal handlers, or raises exceptions that fight
being described. Each must cost at most its own job, never a neighbour's result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskforge import JobStatus, Taskforge
from tests import hostile_pool_tasks as tasks

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def app(redis_url: str, prefix: str) -> Iterator[Taskforge]:
    tasks.app.configure(redis_url=redis_url, prefix=prefix)
    yield tasks.app
    tasks.app.client.close()


def drain(start: StartWorker, *options: str) -> str:
    proc = start("tests.hostile_pool_tasks:app", "--pool", "process", "--burst", *options)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()
    return out.decode()


def test_a_task_that_forks_never_answers_for_the_next_job(
    app: Taskforge, worker_process: StartWorker
) -> None:
    forked = tasks.forks.delay()
    after = [tasks.echo_len.delay("abc"), tasks.pid.delay(), tasks.echo_len.delay("abcde")]

    drain(worker_process, "-c", "1")

    child = forked.result(timeout=5)
    assert after[0].result(timeout=5) == 3
    assert after[1].result(timeout=5) == child  # the same child served it, not the fork's copy
    assert after[2].result(timeout=5) == 5


def test_signal_handlers_a_task_replaced_are_restored_for_the_next_job(
    app: Taskforge, worker_process: StartWorker
) -> None:
    rude = tasks.own_handlers.delay()
    limited = tasks.sleep_soft.delay()

    drain(worker_process, "-c", "1")

    assert rude.result(timeout=5)
    assert limited.result(timeout=5) == "soft"  # its soft limit still raised in that child


def test_exceptions_that_fight_being_described_are_the_attempts_error_not_a_lost_child(
    app: Taskforge, worker_process: StartWorker
) -> None:
    broken_str = tasks.str_raises.delay()
    interrupt = tasks.keyboard.delay()
    before, after = tasks.pid.delay(), tasks.pid.delay()

    out = drain(worker_process, "-c", "1")

    rec = app.client.record("default", broken_str.id)
    assert rec.status == JobStatus.DEAD
    assert rec.error_type is not None and rec.error_type.endswith("StrRaises"), out
    assert "__str__ failed" in (rec.error or "")
    rec = app.client.record("default", interrupt.id)
    assert (rec.status, rec.error_type) == (JobStatus.DEAD, "KeyboardInterrupt"), out
    assert "WorkerLostError" not in out
    assert before.result(timeout=5) == after.result(timeout=5)  # no child was lost


def test_a_sigterm_to_the_whole_process_group_drains_running_pool_jobs(
    app: Taskforge, redis_url: str, prefix: str
) -> None:
    # As systemd's default KillMode=control-group, dumb-init or `kill -TERM -<pgid>` do: the
    # signal reaches the children too. The worker's grace must decide, not the signal.
    jobs = [tasks.one_shot.delay(2.0) for _ in range(2)]
    env = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix,
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip
    cmd = [sys.executable, "-m", "taskforge.cli", "worker", "tests.hostile_pool_tasks:app",
           "--pool", "process", "-c", "2", "--grace", "30"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        client = app.client.broker.client
        deadline = time.monotonic() + 60
        while client.llen(f"{prefix}:hostile:started") < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "jobs never started"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, out.decode()
    for handle in jobs:
        rec = app.client.record("default", handle.id)
        assert (rec.status, rec.attempts) == (JobStatus.SUCCEEDED, 1), out.decode()
