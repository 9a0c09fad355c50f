"""The pytest plugin, as a user's project sees it: fixtures, the app option, and no cost unused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TASKS = """
from taskforge import Retry, Taskforge, current_job

app = Taskforge()

@app.task
def add(a: int, b: int) -> int:
    return a + b

@app.task(max_retries=1)
def broken() -> None:
    raise ValueError("nope")

@app.task
def progress() -> list:
    current_job().set_progress(0.5, "half")
    return current_job().progress_history
"""

USER_TESTS = """
from taskforge import JobStatus
from tasks import add, broken, progress

def test_delay_waits_for_the_worker(taskforge_app, taskforge_worker, taskforge_events):
    handle = add.delay(2, 3)
    assert handle.status() is JobStatus.QUEUED
    assert taskforge_app.settings.redis_url.startswith("memory://")

    stats = taskforge_worker.drain()

    assert handle.result(timeout=1) == 5
    assert stats.succeeded == 1
    assert taskforge_events.statuses(handle.id) == ["queued", "active", "succeeded"]

def test_eager_failure_is_dead_after_its_retries(taskforge_eager, taskforge_events):
    handle = broken.delay()

    assert handle.status() is JobStatus.DEAD
    assert taskforge_events.statuses(handle.id) == [
        "queued", "active", "retrying", "queued", "active", "dead"]

def test_direct_call_records_progress():
    assert progress() == [(0.5, "half")]

def test_each_test_gets_its_own_server(taskforge_app, taskforge_worker):
    assert taskforge_worker.drain().processed == 0
"""


@pytest.mark.slow  # the same fixtures in a project: test_the_testing_example_passes
def test_fixtures_run_a_projects_tasks_on_a_private_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tasks=TASKS, test_user=USER_TESTS)
    pytester.makeini("[pytest]\ntaskforge_app = tasks.py:app\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=4)


@pytest.mark.slow  # a second pytest process; app.testing() on real Redis is in test_testing.py
def test_fixtures_run_on_a_real_redis_when_configured(
    pytester: pytest.Pytester, redis_url: str
) -> None:
    pytester.makepyfile(tasks=TASKS, test_user=USER_TESTS.replace('"memory://"', '"redis://"'))
    pytester.makeini(f"[pytest]\ntaskforge_app = tasks:app\ntaskforge_redis_url = {redis_url}\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=4)


def test_the_plugin_does_not_import_taskforge_for_projects_that_do_not_use_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_other="""
        import sys

        def test_nothing_imported():
            assert "taskforge_pytest" in sys.modules  # loaded by the entry point
            assert "taskforge" not in sys.modules and "redis" not in sys.modules
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


def test_a_bad_app_option_says_what_to_write(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x="def test_x(taskforge_app):\n    pass\n")
    pytester.makeini("[pytest]\ntaskforge_app = nowhere.py:app\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no Python file*nowhere.py*give an existing .py file*"])


def test_the_testing_example_passes() -> None:
    """``examples/testing`` (the README's snippets) run as a user runs it."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASKFORGE_"))}
    cmd = [sys.executable, "-m", "pytest", "examples/testing", "-q", "-p", "no:cacheprovider"]

    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=240)

    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "5 passed" in proc.stdout
