"""The process pool, in real ``taskforge worker --pool process`` subprocesses on a real Redis."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from taskforge import ConfigurationError, JobFailedError, JobStatus, Taskforge, Worker
from taskforge.job import JobRecord
from tests.support import pool_tasks

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def app(redis_url: str, prefix: str) -> Iterator[Taskforge]:
    """``tests.support.pool_tasks.app`` pointed at the test Redis and prefix the workers use."""
    pool_tasks.app.configure(redis_url=redis_url, prefix=prefix)
    yield pool_tasks.app
    pool_tasks.app.client.close()


def burst(start: StartWorker, *options: str) -> tuple[int, list[dict[str, Any]], str]:
    """Run a process-pool worker until the queue is drained: (its pid, JSON lines, output)."""
    proc = start("tests.support.pool_tasks:app", "--pool", "process", "--burst", "--json", *options)
    out, _ = proc.communicate(timeout=90)
    text = out.decode()
    assert proc.returncode == 0, text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return proc.pid, lines, text


def record(app: Taskforge, job_id: str) -> JobRecord:
    return app.client.record("default", job_id)


def wait_report(app: Taskforge, name: str, timeout_s: float = 60) -> str:
    """The first value a task reported into ``name`` (polled: a BLPOP this long would outlast
    the client's socket timeout)."""
    client = app.client.broker.client
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        values = client.lrange(pool_tasks.log_key(name), 0, 0)
        if values:
            return str(values[0])
        time.sleep(0.05)
    raise AssertionError(f"nothing reported into {name!r} in {timeout_s}s")


def test_sync_tasks_run_in_child_processes_and_async_ones_on_the_loop(
    app: Taskforge, worker_process: StartWorker
) -> None:
    syncs = [pool_tasks.pid.delay() for _ in range(6)]
    on_loop = pool_tasks.apid.delay()

    worker_pid, lines, _ = burst(worker_process, "-c", "2")

    child_pids = {h.result(timeout=5) for h in syncs}
    assert worker_pid not in child_pids
    assert 1 <= len(child_pids) <= 2  # -c 2: two children, reused
    assert on_loop.result(timeout=5) == worker_pid
    assert len(lines) == 7 and {line["status"] for line in lines} == {"succeeded"}


def test_sync_tasks_in_child_processes_incr_through_each_childs_own_client(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handles = [pool_tasks.body_incr.delay() for _ in range(6)]

    burst(worker_process, "-c", "2")

    results = [tuple(h.result(timeout=5)) for h in handles]
    assert app.client.broker.client.get(pool_tasks.log_key("body_incr")) == "6"
    clients_per_child: dict[int, set[int]] = {}
    for child, client in results:
        clients_per_child.setdefault(child, set()).add(client)
    assert all(len(c) == 1 for c in clients_per_child.values())  # made once per child


def test_a_child_killed_mid_job_fails_that_attempt_and_the_job_retries(
    app: Taskforge, worker_process: StartWorker
) -> None:
    victim = pool_tasks.die_once.delay()
    bystanders = [pool_tasks.pid.delay() for _ in range(3)]

    _, lines, _ = burst(worker_process, "-c", "2")

    rec = record(app, victim.id)
    assert rec.status == JobStatus.SUCCEEDED and rec.attempts == 2
    (lost,) = [line for line in lines if line["status"] == "retrying"]
    assert lost["job_id"] == victim.id
    assert lost["error"].startswith("WorkerLostError: pool process")
    assert "killed by SIGKILL" in lost["error"]
    assert all(record(app, h.id).status == JobStatus.SUCCEEDED for h in bystanders)


def test_a_timed_out_task_is_interrupted_its_finally_runs_and_the_next_job_gets_a_fresh_child(
    app: Taskforge, worker_process: StartWorker
) -> None:
    slow = pool_tasks.hang.delay()
    after = pool_tasks.pid.delay()

    burst(worker_process, "-c", "1")

    rec = record(app, slow.id)
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "JobTimeoutError"
    client = app.client.broker.client
    assert client.lrange(pool_tasks.log_key("cleaned"), 0, -1) == [slow.id]
    assert record(app, after.id).status == JobStatus.SUCCEEDED


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace(
    app: Taskforge, worker_process: StartWorker
) -> None:
    stuck = pool_tasks.stubborn.delay()

    started = time.monotonic()
    burst(worker_process, "-c", "1")

    assert record(app, stuck.id).error_type == "JobTimeoutError"
    (pid,) = app.client.broker.client.lrange(pool_tasks.log_key("stubborn"), 0, -1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)  # SIGKILLed and reaped
    assert time.monotonic() - started < 60


def test_children_are_replaced_after_max_tasks_per_child(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handles = [pool_tasks.pid.delay() for _ in range(6)]

    burst(worker_process, "-c", "1", "--max-tasks-per-child", "2")

    pids = [h.result(timeout=5) for h in handles]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4] == pids[5]
    assert len(set(pids)) == 3


def test_a_child_past_its_memory_limit_is_replaced(
    app: Taskforge, worker_process: StartWorker
) -> None:
    first, second = pool_tasks.pid.delay(), pool_tasks.pid.delay()
    hog = pool_tasks.hog.delay(200)
    after = pool_tasks.pid.delay()

    burst(worker_process, "-c", "1", "--max-memory-per-child-mb", "150")

    assert first.result(timeout=5) == second.result(timeout=5)  # small: kept
    assert hog.result(timeout=5) == first.result(timeout=5)
    assert after.result(timeout=5) != hog.result(timeout=5)  # grew past 150 MiB: replaced


def test_the_childs_traceback_is_kept_on_the_record(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.fail.delay("bad input")

    burst(worker_process, "-c", "1")

    rec = record(app, handle.id)
    assert (rec.error_type, rec.error) == ("ValueError", "bad input")
    assert "(in the pool process)" in (rec.traceback or "")
    assert "pool_tasks.py" in (rec.traceback or "")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--pool", "fork"], "--pool must be one of thread, process"),
        (["--max-tasks-per-child", "5"], "need --pool process"),
    ],
)
def test_bad_pool_options_are_refused_with_what_to_write(
    worker_process: StartWorker, options: list[str], message: str
) -> None:
    proc = worker_process("tests.support.pool_tasks:app", "--burst", *options)
    out, _ = proc.communicate(timeout=60)

    assert proc.returncode == 2
    assert message in out.decode()


def test_pool_benchmark_prints_its_table(redis_url: str) -> None:
    from tests.system.test_benchmarks import ROOT

    cmd = [sys.executable, str(ROOT / "benchmarks" / "pool_bench.py"), "--redis-url", redis_url]
    cmd += ["--rounds", "1", "--cpu-n", "4", "--noop-n", "20", "--ipc-n", "20"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)

    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = [line.split("  ")[0] for line in proc.stdout.splitlines()[2:-1]]
    assert figures == [
        "CPU 50 ms jobs/s, -c 2", "no-op µs per job, -c 2", "no-op µs per job, -c 8",
        "IPC round trip µs (one child)", "start a replacement child, ms",
        "host ceiling: 2 bare processes",
    ]  # fmt: skip


def test_cancelling_a_running_pool_job_stops_its_child(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.sleepy.delay()
    proc = worker_process("tests.support.pool_tasks:app", "--pool", "process", "-c", "1")
    client = app.client.broker.client
    started = client.blpop([pool_tasks.log_key("sleepy")], timeout=60)
    assert started is not None, "the job never started"

    handle.cancel()

    with pytest.raises(JobFailedError, match="cancelled"):
        handle.result(timeout=30)
    child_pid = int(started[1])
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_pool_tasks_get_typed_arguments_and_a_deliberate_retry_keeps_its_countdown(
    app: Taskforge, worker_process: StartWorker
) -> None:
    typed = pool_tasks.typed.delay(datetime(2030, 1, 2, tzinfo=UTC))
    later = pool_tasks.retry_later.delay()

    _, lines, _ = burst(worker_process, "-c", "2")

    assert typed.result(timeout=5) == "datetime"  # not the JSON text it travelled as
    assert later.result(timeout=5) == "second"  # a Retry, not a rebuilt stand-in the filter kills
    (retrying,) = [line for line in lines if line["status"] == "retrying"]
    assert retrying["job_id"] == later.id and "not yet" in retrying["error"]


def test_soft_timeout_raises_in_the_child_and_the_task_may_finish(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.soft.delay()

    started = time.monotonic()
    burst(worker_process, "-c", "1")

    assert handle.result(timeout=5) == "wrapped up"
    assert time.monotonic() - started < 25  # not the 30 s sleep
    client = app.client.broker.client
    assert client.lrange(pool_tasks.log_key("soft"), 0, -1) == ["soft time limit of 0.3s exceeded"]


def test_a_task_that_swallows_the_soft_limit_is_still_killed_by_the_hard_timeout(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.soft_ignored.delay()
    after = pool_tasks.pid.delay()

    burst(worker_process, "-c", "1")

    assert record(app, handle.id).error_type == "JobTimeoutError"
    (pid,) = app.client.broker.client.lrange(pool_tasks.log_key("soft_ignored"), 0, -1)
    assert not _alive(int(pid))  # SIGTERM ignored: SIGKILLed after the grace
    assert record(app, after.id).status == JobStatus.SUCCEEDED


def test_progress_from_a_child_reaches_the_record_while_it_runs(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.progress.delay()
    proc = worker_process("tests.support.pool_tasks:app", "--pool", "process", "-c", "1")
    client = app.client.broker.client
    started = wait_report(app, "progress")

    deadline = time.monotonic() + 10
    while record(app, handle.id).progress != 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
    running = record(app, handle.id)
    assert (running.status, running.progress) == (JobStatus.ACTIVE, 0.5)
    assert running.progress_message == "halfway"
    client.rpush(pool_tasks.log_key("go"), "1")

    assert handle.result(timeout=30) == int(started) != proc.pid
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_a_flood_of_progress_reports_from_a_child_ends_with_the_last_one(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.progress_flood.delay(5000)
    proc = worker_process("tests.support.pool_tasks:app", "--pool", "process", "-c", "1")

    deadline = time.monotonic() + 60
    while record(app, handle.id).progress_message != "step 5000" and time.monotonic() < deadline:
        time.sleep(0.05)
    rec = record(app, handle.id)
    assert (rec.status, rec.progress, rec.progress_message) == (JobStatus.ACTIVE, 1.0, "step 5000")
    app.client.broker.client.rpush(pool_tasks.log_key("go"), "1")
    assert handle.result(timeout=30) == 5000
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_a_cancel_reaches_the_child_raise_if_cancelled_raises_and_the_child_is_stopped(
    app: Taskforge, worker_process: StartWorker
) -> None:
    handle = pool_tasks.cancellable.delay()
    proc = worker_process("tests.support.pool_tasks:app", "--pool", "process", "-c", "1")
    started = int(wait_report(app, "cancellable"))

    handle.cancel()

    with pytest.raises(JobFailedError, match="cancelled"):
        handle.result(timeout=30)
    assert wait_report(app, "cancel_seen") == f"True: job {handle.id} was cancelled"
    deadline = time.monotonic() + 10
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(started)
    proc.terminate()
    assert proc.wait(timeout=30) == 0


def test_the_process_span_covers_the_child_and_records_its_error(
    redis_url: str, prefix: str, worker_process: StartWorker, tmp_path: Path
) -> None:
    from tests.support import otel_tasks

    otel_tasks.app.configure(redis_url=redis_url, prefix=prefix)
    otel_tasks.SPANS.clear()
    try:
        handle = otel_tasks.crunch.delay()
        (create,) = [otel_tasks.span_dict(s) for s in otel_tasks.SPANS.get_finished_spans()]
        dump = tmp_path / "telemetry.json"
        proc = worker_process(
            "tests.support.otel_tasks:app", "--pool", "process", "-c", "1", "--burst",
            env={"TASKFORGE_TEST_TELEMETRY": str(dump)},
        )  # fmt: skip
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out.decode()
        inside = handle.result(timeout=5)
    finally:
        otel_tasks.app.client.close()

    spans = json.loads(dump.read_text())["spans"]
    failed, succeeded = [s for s in spans if s["name"] == "process default"]
    assert inside["pid"] != proc.pid  # the task ran in a child...
    assert inside["trace_id"] == create["trace_id"]  # ...in the producer's trace,
    assert inside["parent_id"] == succeeded["span_id"]  # under the attempt's process span
    assert failed["status"] == "ERROR" and failed["events"] == ["exception"]
    assert failed["attributes"]["error.type"] == "ValueError"
    assert succeeded["attributes"]["taskforge.job.outcome"] == "succeeded"


@pytest.mark.parametrize(
    ("options", "in_child", "in_worker"),
    [
        ([], {"choice.in_process"}, {"choice.in_thread", "choice.default"}),
        (["--pool", "process"], {"choice.in_process", "choice.default"}, {"choice.in_thread"}),
    ],
)
def test_a_task_can_choose_its_pool_whatever_the_workers(
    redis_url: str,
    prefix: str,
    worker_process: StartWorker,
    options: list[str],
    in_child: set[str],
    in_worker: set[str],
) -> None:
    from tests.support import pool_choice_tasks as choice

    choice.app.configure(redis_url=redis_url, prefix=prefix)
    try:
        handles = {t.name: t.delay() for t in (choice.in_process, choice.in_thread, choice.default)}
        proc = worker_process("tests.support.pool_choice_tasks:app", "--burst", "-c", "2", *options)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out.decode()
        pids = {name: h.result(timeout=5) for name, h in handles.items()}
    finally:
        choice.app.client.close()

    assert {name for name, pid in pids.items() if pid == proc.pid} == in_worker
    assert {name for name, pid in pids.items() if pid != proc.pid} == in_child


def test_a_bad_pool_choice_is_refused_at_decoration() -> None:
    app = Taskforge()
    with pytest.raises(ConfigurationError, match="pool must be one of 'thread', 'process'"):
        app.task(name="x.fork", pool="fork")(lambda: None)

    async def coro() -> None: ...

    with pytest.raises(ConfigurationError, match="is async"):
        app.task(name="x.async", pool="process")(coro)
    assert "x.fork" not in app.registry and "x.async" not in app.registry


def test_an_in_process_worker_without_a_pool_runs_pool_process_tasks_in_threads(
    app_factory: Callable[..., Taskforge], caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()

    @app.task(name="x.where", pool="process")
    def where() -> int:
        return os.getpid()

    handle = where.delay()
    with caplog.at_level(logging.INFO, logger="taskforge.executor"):
        worker = Worker(app.settings, app.registry, burst=True, block_s=0.5)
    anyio.run(worker.run)

    assert handle.result(timeout=10) == os.getpid()
    assert "x.where ask for pool='process' but this worker has no process pool" in caplog.text
