"""Real ``taskforge worker`` processes: priority, SIGTERM hand-back, SIGKILL recovery, bad URL."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from taskforge import JobPriority, JobStatus, Settings, Taskforge
from taskforge.protocol.keys import QueueKeys
from tests.support import tasks_e2e
from tests.support.redis_server import free_port

StartWorker = Callable[..., subprocess.Popen[bytes]]
APP = "tests.support.tasks_e2e:app"


@pytest.fixture
def e2e(settings_factory: Callable[..., Settings]) -> Iterator[Taskforge]:
    """``tests.support.tasks_e2e.app`` on this test's Redis and prefix (as its workers are)."""
    tasks_e2e.app.configure(settings_factory())
    yield tasks_e2e.app
    tasks_e2e.app.client.close()


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def wait_started(r: redis.Redis, timeout_s: float = 20.0) -> str:
    """Block until a task reports it started; returns its job id."""
    got = r.blpop([tasks_e2e.log_key("started")], timeout=timeout_s)
    assert got is not None, f"no task started within {timeout_s}s"
    return str(got[1])


def read_until(proc: subprocess.Popen[bytes], text: str, timeout_s: float = 20.0) -> str:
    """Read the worker's output until ``text`` appears (bounded); returns what was read."""
    assert proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while text.encode() not in seen:
            left_s = deadline - time.monotonic()
            assert left_s > 0, f"{text!r} not in worker output within {timeout_s}s: {seen!r}"
            if selector.select(left_s):
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, f"worker exited before {text!r}: {seen!r}"
                seen += chunk
    return seen.decode(errors="replace")


def output_of(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> str:
    out, _ = proc.communicate(timeout=timeout_s)
    return out.decode(errors="replace")


def test_worker_process_runs_jobs_in_strict_priority_order(
    e2e: Taskforge, worker_process: StartWorker, r: redis.Redis
) -> None:
    for i in range(3):
        tasks_e2e.record.options(priority="low").delay(f"low-{i}")
    for i in range(3):
        tasks_e2e.record.delay(f"normal-{i}")
    for i in range(3):
        tasks_e2e.record.options(priority="high").delay(f"high-{i}")

    proc = worker_process(APP, "-c", "1", "--burst")

    out = output_of(proc)
    assert proc.returncode == 0, out
    order = r.lrange(tasks_e2e.log_key("order"), 0, -1)
    assert order == [f"{p}-{i}" for p in ("high", "normal", "low") for i in range(3)]


@pytest.mark.parametrize("task_name", ["e2e.block", "e2e.block_sync"])
def test_sigterm_hands_a_running_job_back_and_exits_zero(
    e2e: Taskforge, worker_process: StartWorker, r: redis.Redis, task_name: str
) -> None:
    long_job = tasks_e2e.block if task_name == "e2e.block" else tasks_e2e.block_sync
    handle = long_job.delay(60)
    proc = worker_process(APP, "--grace", "0.3")
    assert wait_started(r) == handle.id
    assert handle.status() is JobStatus.ACTIVE

    proc.send_signal(signal.SIGTERM)

    out = output_of(proc)
    assert proc.returncode == 0, out
    info = handle.info()
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0
    keys = QueueKeys(e2e.settings.prefix, "default")
    assert r.lrange(keys.ready(JobPriority.NORMAL), 0, -1) == [handle.id]
    assert r.zcard(keys.inflight) == 0
    assert "handed back" in out


def test_job_of_a_killed_worker_is_recovered_by_another(
    e2e: Taskforge, worker_process: StartWorker, r: redis.Redis
) -> None:
    handle = tasks_e2e.die_once.delay()
    short_lease = {"TASKFORGE_LEASE": "1"}
    doomed = worker_process(APP, env=short_lease)
    assert wait_started(r) == handle.id

    doomed.kill()
    doomed.wait(10)
    killed_at = time.monotonic()
    rescuer = worker_process(APP, env=short_lease)

    # Delivery 2 unless a starved host let the doomed worker's own 1 s lease lapse first.
    assert handle.result(timeout=20).startswith("recovered on delivery ")
    assert time.monotonic() - killed_at < 15
    info = handle.info()
    assert info.status is JobStatus.SUCCEEDED
    assert info.attempts == 1
    assert info.deliveries >= 2
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(15) == 0


def test_worker_against_unreachable_redis_exits_with_one_masked_line(
    worker_process: StartWorker,
) -> None:
    port = free_port()
    url = f"redis://:secret@127.0.0.1:{port}/0"

    proc = worker_process(APP, env={"REDIS_URL": url, "REDIS_SOCKET_CONNECT_TIMEOUT": "0.5"})

    out = output_of(proc, 30)
    assert proc.returncode != 0
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    assert f"127.0.0.1:{port}" in errors[0]
    assert "***" in errors[0]
    assert "secret" not in out
    assert "Traceback" not in out


def test_second_sigterm_hands_the_job_back_at_once(
    e2e: Taskforge, worker_process: StartWorker, r: redis.Redis
) -> None:
    handle = tasks_e2e.block.delay(60)
    proc = worker_process(APP, "--grace", "60")
    assert wait_started(r) == handle.id
    proc.send_signal(signal.SIGTERM)
    # Signals sent back to back coalesce; a second one must come after the first was handled.
    seen = read_until(proc, "stopping gracefully")
    started = time.monotonic()

    proc.send_signal(signal.SIGTERM)

    out = seen + output_of(proc)
    assert proc.returncode == 0, out
    assert time.monotonic() - started < 10  # not the 60 s grace
    assert "handed back" in out
    info = handle.info()
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0


def test_sigint_stops_a_worker_like_sigterm(
    e2e: Taskforge, worker_process: StartWorker, r: redis.Redis
) -> None:
    handle = tasks_e2e.block.delay(60)
    proc = worker_process(APP, "--grace", "0.2")
    assert wait_started(r) == handle.id

    proc.send_signal(signal.SIGINT)

    out = output_of(proc)
    assert proc.returncode == 0, out
    assert handle.status() is JobStatus.QUEUED
