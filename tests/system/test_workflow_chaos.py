"""Chains and chords under worker SIGKILLs and a Redis kill -9: no workflow lost, no chord
callback run twice (tests/support/chaos_workflows.py; the long form is marked slow)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import chaos_workflows

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="the chaos suite starts its own redis-server; none is installed",
)


@pytest.mark.slow  # deaths at every step: test_workflow_state_machine.py
def test_workers_killed_under_chains_and_chords_lose_no_workflow_and_no_callback_runs_twice() -> (
    None
):
    report = chaos_workflows.workflows_kill_workers(
        chains=10, steps=8, chords=3, members=10, kill_every_s=1.5
    )

    assert report.kills >= 1, report
    assert report.lost == 0, report
    assert report.notes["callbacks_twice"] == 0, report
    assert report.notes["callbacks_never"] == 0, report
    assert "worker_tracebacks" not in report.notes, report


def test_redis_killed_and_restarted_under_workflows_loses_none() -> None:
    report = chaos_workflows.workflows_redis_restarts(chains=10, steps=8, chords=3, members=10)

    assert report.redis_restarts >= 1, report  # the second may come after the last workflow
    assert report.lost == 0, report
    assert report.notes["callbacks_twice"] == 0, report
    assert "worker_tracebacks" not in report.notes, report


@pytest.mark.slow
def test_the_long_form_loses_nothing() -> None:
    reports = [f() for f in chaos_workflows.LONG.values()]

    assert all(r.lost == 0 and r.notes["callbacks_twice"] == 0 for r in reports), reports
