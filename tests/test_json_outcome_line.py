"""What README's Status events section says of `taskforge worker --json` lines against the
`job:updates` event: the same fields, `duration_ms` to three decimals, and `timestamp`/`run_at`
from the worker's clock at the moment the line is written (the event's come from Redis TIME)."""

from __future__ import annotations

import pytest

from taskforge.middleware import RunOutcome
from taskforge.worker import outcome_log


def test_line_times_are_the_workers_clock_and_duration_keeps_three_decimals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outcome_log.time, "time", lambda: 1_000.0)
    outcome = RunOutcome(
        "retrying", duration_s=0.0371234, error_type="ValueError", error="bad", retry_in_s=2.5
    )
    line = outcome_log.outcome_line(
        job_id="j1", task="t", queue="default", attempt=1, outcome=outcome, worker="h:1:abc"
    )
    assert line["timestamp"] == 1_000.0
    assert line["run_at"] == 1_002.5
    assert line["duration_ms"] == 37.123
    assert line["error"] == "ValueError: bad"
    assert set(line) == {
        "job_id", "task", "queue", "status", "attempt", "timestamp", "duration_ms", "worker",
        "error", "run_at",
    }  # fmt: skip


def test_a_success_line_has_no_error_and_no_run_at() -> None:
    line = outcome_log.outcome_line(
        job_id="j2", task="t", queue="q", attempt=2,
        outcome=RunOutcome("succeeded", duration_s=0.001), worker="h:1:abc",
    )  # fmt: skip
    assert "error" not in line and "run_at" not in line
    assert line["status"] == "succeeded" and line["attempt"] == 2
