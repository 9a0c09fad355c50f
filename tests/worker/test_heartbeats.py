"""Worker heartbeats as `taskforge workers` sees them: appear, carry running jobs, expire."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from taskforge import ConfigurationError, Taskforge
from taskforge.cli import cli
from taskforge.worker.upkeep import heartbeat_interval_s

#: Fast beats for tests: every 0.3 s, so the heartbeat TTL is 1 s (ceil of three beats).
FAST = {"TASKFORGE_HEARTBEAT": "0.3"}
TTL_S = 1.0

tasks = Taskforge()


@tasks.task(name="hb.nap")
def nap(seconds: float) -> None:
    """Sleeps (a job that stays running while we look)."""
    time.sleep(seconds)


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)


@pytest.fixture
def live(redis_url: str, prefix: str) -> Callable[[], list[dict[str, Any]]]:
    """The live workers of ``taskforge workers --json`` for this test's prefix (it also lists
    lost ones, marked ``lost``, until an hour after their last beat)."""
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}

    def workers() -> list[dict[str, Any]]:
        result = CliRunner().invoke(cli, ["workers", "--json"], env=env)
        assert result.exit_code == 0, result.output
        return [w for w in json.loads(result.stdout) if not w["lost"]]

    return workers


def mine(workers: list[dict[str, Any]], proc: subprocess.Popen[bytes]) -> dict[str, Any] | None:
    return next((w for w in workers if w["pid"] == proc.pid), None)


def test_a_started_worker_appears_with_host_pid_queues_and_concurrency(
    worker_process: Callable[..., subprocess.Popen[bytes]],
    live: Callable[[], list[dict[str, Any]]],
) -> None:
    proc = worker_process("tests.worker.test_heartbeats:tasks", "-Q", "mail", "-Q", "default",
                          "-c", "7", "--log-level", "WARNING", env=FAST)  # fmt: skip

    seen = wait_until(lambda: mine(live(), proc))

    assert seen["host"] == socket.gethostname()
    assert seen["queues"] == ["mail", "default"]
    assert seen["concurrency"] == 7
    assert (seen["running"], seen["running_jobs"], seen["processed"], seen["failed"]) == (
        0, [], 0, 0,
    )  # fmt: skip
    assert time.time() - seen["last_seen"] < 5
    assert seen["id"].startswith(f"{socket.gethostname()}:{proc.pid}:")


def test_heartbeat_lists_running_jobs_and_counts_processed(
    worker_process: Callable[..., subprocess.Popen[bytes]],
    live: Callable[[], list[dict[str, Any]]],
    redis_url: str,
    prefix: str,
) -> None:
    app = Taskforge(tasks.settings.model_copy(update={"redis_url": redis_url, "prefix": prefix}))
    app.task(name="hb.nap")(nap)
    proc = worker_process("tests.worker.test_heartbeats:tasks", "--log-level", "WARNING", env=FAST)
    long_job = app.call("hb.nap", 30)
    short_job = app.call("hb.nap", 0)

    long_id = app.enqueue_many([long_job])[0].id
    running = wait_until(lambda: (w := mine(live(), proc)) and long_id in w["running_jobs"] and w)
    app.enqueue_many([short_job])
    counted = wait_until(lambda: (w := mine(live(), proc)) and w["processed"] == 1 and w)
    app.client.close()

    assert running["running"] == 1
    assert counted["running_jobs"] == [long_id]


def test_a_sigkilled_worker_is_shown_lost_once_its_heartbeat_expires(
    worker_process: Callable[..., subprocess.Popen[bytes]],
    live: Callable[[], list[dict[str, Any]]],
    redis_url: str,
    prefix: str,
) -> None:
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}
    proc = worker_process("tests.worker.test_heartbeats:tasks", "--log-level", "WARNING", env=FAST)
    wait_until(lambda: mine(live(), proc))

    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()
    still_listed = mine(live(), proc) is not None  # nothing removed it: only the TTL can
    wait_until(lambda: mine(live(), proc) is None, timeout_s=TTL_S + 5)
    gone_after_s = time.monotonic() - killed_at
    listed = json.loads(CliRunner().invoke(cli, ["workers", "--json"], env=env).stdout)

    assert still_listed
    assert gone_after_s <= TTL_S + 1.0
    assert [w["lost"] for w in listed if w["pid"] == proc.pid] == [True]  # shown as lost


def test_a_worker_stopped_with_sigterm_is_removed_at_once(
    worker_process: Callable[..., subprocess.Popen[bytes]],
    live: Callable[[], list[dict[str, Any]]],
) -> None:
    # A slow beat: if the entry goes away, it is the worker's goodbye, not the TTL.
    proc = worker_process("tests.worker.test_heartbeats:tasks", env={"TASKFORGE_HEARTBEAT": "30"})
    wait_until(lambda: mine(live(), proc))

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0

    assert mine(live(), proc) is None


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf"])
def test_a_heartbeat_interval_that_cannot_work_is_refused(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKFORGE_HEARTBEAT", raw)

    with pytest.raises(ConfigurationError, match="TASKFORGE_HEARTBEAT"):
        heartbeat_interval_s()


def test_the_heartbeat_interval_defaults_to_five_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKFORGE_HEARTBEAT", raising=False)

    assert heartbeat_interval_s() == 5.0
