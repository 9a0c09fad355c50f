"""Three ways to test tasks: call them, app.testing(), and the pytest fixtures."""

from __future__ import annotations

import pytest
from shop_tasks import add, build_report, send, signup

from taskforge import JobFailedError, JobStatus, Taskforge, default_app
from taskforge.testing import EventRecorder, Testbed, job_context


def test_a_direct_call_gets_a_stand_in_job() -> None:
    assert build_report(3) == 1  # attempt 1, no Redis

    with job_context(attempt=4) as job:
        assert build_report(12) == 4
    assert job.progress_history[-1] == (1.0, "page 12")


def test_eager_delay_has_the_result() -> None:
    with default_app.testing():
        h = add.delay(2, 3)  # returns once the job ran
        assert h.result() == 5


def test_send_gives_up_after_its_retries() -> None:
    with default_app.testing() as bed, bed.events() as events:
        h = send.delay("nobody@example.invalid")

        assert h.status() is JobStatus.DEAD
        assert events.statuses(h.id) == (
            ["queued", "active"] + ["retrying", "queued", "active"] * 3 + ["dead"]
        )
        with pytest.raises(JobFailedError, match="ValueError: cannot deliver"):
            h.result()


def test_signup_with_the_fixtures(
    taskforge_app: Taskforge, taskforge_worker: Testbed, taskforge_events: EventRecorder
) -> None:
    h = signup.delay("ada")  # queued on this test's private server
    assert h.status() is JobStatus.QUEUED

    stats = taskforge_worker.drain()

    assert h.result() == "welcome ada" and stats.succeeded == 2
    assert taskforge_events.statuses(h.id) == ["queued", "active", "succeeded"]


def test_signup_eagerly(taskforge_eager: Taskforge) -> None:
    assert signup.delay("ada").result() == "welcome ada"
