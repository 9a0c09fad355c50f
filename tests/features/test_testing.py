"""Testing mode: eager .delay() through the real worker, drains, captured events, stand-ins."""

from __future__ import annotations

import anyio
import pytest

from taskforge import (
    JobFailedError,
    JobStatus,
    Retry,
    Taskforge,
    TaskforgeError,
    current_job,
)
from taskforge.context import StandInContext
from taskforge.protocol.brokers import SyncBroker
from taskforge.settings import Settings
from taskforge.testing import job_context


def make_app(prefix: str) -> Taskforge:
    # Settings that point at nothing reachable: testing mode must never use them.
    return Taskforge(Settings(redis_url="redis://127.0.0.1:1/0", prefix=prefix))


# ------------------------------------------------------------------ eager mode


def test_eager_delay_runs_the_job_in_a_worker_and_the_handle_has_the_result(
    any_url: str, prefix: str
) -> None:
    app = make_app(prefix)
    seen: list[str] = []

    @app.task
    def add(a: int, b: int) -> int:
        seen.append(current_job().job.id)
        return a + b

    with app.testing(redis_url=any_url):
        handle = add.delay(2, 3)

        assert handle.status() is JobStatus.SUCCEEDED
        assert handle.result(timeout=1) == 5
        assert seen == [handle.id]  # ran as that job, by a worker: not a direct call


def test_eager_failure_retries_then_dead_letters_as_the_task_says(
    any_url: str, prefix: str
) -> None:
    app = make_app(prefix)
    attempts: list[int] = []

    @app.task(max_retries=2, retry_backoff=600)
    def broken() -> None:
        attempts.append(current_job().attempt)
        raise ValueError("smtp down")

    with app.testing(redis_url=any_url) as bed:
        handle = broken.delay()

        assert attempts == [1, 2, 3]  # the backoff (600 s, 1200 s) was skipped, not the retries
        assert handle.status() is JobStatus.DEAD
        with pytest.raises(JobFailedError, match="ValueError: smtp down"):
            handle.result(timeout=1)
        broker = SyncBroker(bed.settings)
        assert broker.run(broker.ops.counts("default")).dead == 1


def test_eager_keeps_the_retry_budget_of_a_task_that_retries_itself(
    any_url: str, prefix: str
) -> None:
    app = make_app(prefix)
    attempts: list[int] = []

    @app.task(max_retries=5)
    def poll() -> str:
        attempts.append(current_job().attempt)
        if len(attempts) < 3:
            raise Retry(countdown_s=3600, reason="not yet")
        return "ready"

    with app.testing(redis_url=any_url) as bed, bed.events() as events:
        handle = poll.delay()

        assert handle.result(timeout=1) == "ready"
        assert attempts == [1, 2, 3]
        assert events.statuses(handle.id).count("retrying") == 2


def test_eager_timeout_fails_the_job_as_a_worker_would(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task(max_retries=0, timeout=0.2)
    async def slow() -> None:
        await anyio.sleep(30)

    with app.testing(redis_url=any_url):
        handle = slow.delay()

        assert handle.status() is JobStatus.DEAD
        assert handle.info().error_type == "JobTimeoutError"


def test_jobs_a_task_sends_run_in_the_same_eager_call(any_url: str, prefix: str) -> None:
    app = make_app(prefix)
    ran: list[str] = []

    @app.task(queue="emails")
    def notify(user: str) -> None:
        ran.append(f"notify {user}")

    @app.task
    def signup(user: str) -> None:
        ran.append(f"signup {user}")
        notify.delay(user)  # another queue: the drain follows it there

    with app.testing(redis_url=any_url):
        signup.delay("ada")

        assert ran == ["signup ada", "notify ada"]


def test_schedule_in_eager_mode_runs_at_once_unless_delays_are_kept(
    any_url: str, prefix: str
) -> None:
    app = make_app(prefix)

    @app.task
    def tick() -> str:
        return "tock"

    with app.testing(redis_url=any_url):
        assert tick.schedule(3600).result(timeout=1) == "tock"
    with app.testing(redis_url=any_url, skip_delays=False):
        later = tick.schedule(3600)

        assert later.status() is JobStatus.SCHEDULED


def test_without_eager_jobs_wait_for_drain(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    with app.testing(redis_url=any_url, eager=False) as bed:
        handles = app.enqueue_many([add.s(i, i) for i in range(5)])
        assert {h.status() for h in handles} == {JobStatus.QUEUED}

        stats = bed.drain()

        assert [h.result(timeout=1) for h in handles] == [0, 2, 4, 6, 8]
        assert stats.succeeded == 5


@pytest.mark.anyio
async def test_adelay_in_an_async_test_runs_on_its_event_loop(prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    async def double(x: int) -> int:
        return 2 * x

    with app.testing():
        handle = await double.adelay(21)

        assert await handle.aresult(timeout=1) == 42


def test_testing_mode_restores_the_app_afterwards(prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def noop() -> None: ...

    with app.testing() as bed:
        noop.delay()
        inside = bed.settings

    assert app.settings.redis_url == "redis://127.0.0.1:1/0"
    assert app.settings.prefix == prefix
    assert inside.redis_url.startswith("memory://") and inside.prefix != prefix


def test_a_task_that_never_stops_retrying_ends_the_drain_with_an_error(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskforge.testing.MAX_ROUNDS", 3)
    app = make_app(prefix)

    @app.task(max_retries=100)
    def forever() -> None:
        raise Retry(countdown_s=1)

    with app.testing(), pytest.raises(TaskforgeError, match="still scheduled after 3"):
        forever.delay()


# ------------------------------------------------------------------ events


def test_event_recorder_sees_every_transition_in_order(any_url: str, prefix: str) -> None:
    app = make_app(prefix)

    @app.task(max_retries=0)
    def boom() -> None:
        raise KeyError("gone")

    with app.testing(redis_url=any_url) as bed, bed.events() as events:
        handle = boom.delay()

        history = events.wait_for(handle.id)

    assert [e["status"] for e in history] == ["queued", "active", "dead"]
    assert history[-1]["error"].startswith("KeyError")


# ------------------------------------------------------------------ current_job() in direct calls


def test_a_direct_call_gets_a_stand_in_job_with_a_fresh_id_and_attempt_one() -> None:
    app = Taskforge()

    @app.task(name="report.build")
    def build(pages: int) -> tuple[str, int, str]:
        job = current_job()
        for page in range(pages):
            job.set_progress((page + 1) / pages, f"page {page + 1}")
        return job.job.id, job.attempt, job.job.task

    first, second = build(2), build(2)

    assert first[0] != second[0]
    assert first[1:] == (1, "report.build")


def test_a_stand_in_records_every_progress_report() -> None:
    app = Taskforge()
    jobs: list[StandInContext] = []

    @app.task
    def work() -> None:
        job = current_job()
        assert isinstance(job, StandInContext)
        jobs.append(job)
        job.set_progress(0.5, "half")
        job.set_progress(1.0, "done")

    work()

    assert jobs[0].progress_history == [(0.5, "half"), (1.0, "done")]
    assert jobs[0].progress == (1.0, "done")


def test_an_async_task_called_directly_sees_its_stand_in_when_awaited() -> None:
    app = Taskforge()

    @app.task
    async def which() -> int:
        return current_job().attempt

    assert anyio.run(which) == 1  # type: ignore[arg-type]


def test_job_context_sets_the_attempt_and_cancel_flag_a_task_sees() -> None:
    app = Taskforge()

    @app.task
    def careful() -> int:
        current_job().raise_if_cancelled()
        return current_job().attempt

    with job_context(attempt=4, job_id="fixed") as job:
        assert careful() == 4
        assert job.job.id == "fixed"
    with job_context(cancel_requested=True), pytest.raises(TaskforgeError, match="cancelled"):
        careful()


def test_current_job_outside_any_task_still_says_where_it_works() -> None:
    with pytest.raises(TaskforgeError, match=r"called directly.*job_context"):
        current_job()


def test_a_task_called_from_inside_a_job_shares_that_job(prefix: str) -> None:
    app = make_app(prefix)

    @app.task
    def inner() -> str:
        return current_job().job.id

    @app.task
    def outer() -> tuple[str, str]:
        return current_job().job.id, inner()

    with app.testing():
        handle = outer.delay()

        assert handle.result(timeout=1) == (handle.id, handle.id)  # typed by the annotation
