"""Retry policy per task: retry_on, dont_retry_on, Fail, Retry(exc=), max_retries=None, and the
typed errors for bad options. Each behaviour runs on memory:// and on a real Redis."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterator

import anyio
import pytest

from taskforge import (
    ConfigurationError,
    Fail,
    JobStatus,
    Retry,
    Settings,
    Taskforge,
    Worker,
)
from taskforge.retry import backoff_s
from taskforge.worker import WorkerStats

pytestmark = pytest.mark.anyio

AppOn = Callable[[], Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(any_url: str) -> Iterator[Taskforge]:
    """An app on memory:// or on the test Redis (a prefix of its own)."""
    app = Taskforge(Settings(redis_url=any_url, prefix=f"trp-{uuid.uuid4().hex[:8]}"))
    yield app
    app.client.close()


async def drain(app: Taskforge) -> WorkerStats:
    worker = Worker(app.settings, app.registry, concurrency=1, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        return await worker.run()


async def test_retry_on_retries_only_the_exceptions_it_names(app: Taskforge) -> None:
    runs: list[str] = []

    @app.task(name="rp.only", max_retries=3, retry_backoff=0, retry_on=(ConnectionError,))
    def only(kind: str) -> None:
        runs.append(kind)
        raise ConnectionError("down") if kind == "conn" else KeyError("missing")

    conn, key = only.delay("conn"), only.delay("key")

    await drain(app)

    assert runs.count("conn") == 4  # the first run and three retries
    assert runs.count("key") == 1  # not named: dead at once
    assert conn.info().status is JobStatus.DEAD
    assert (key.info().status, key.info().error_type) == (JobStatus.DEAD, "KeyError")


async def test_dont_retry_on_ends_those_exceptions_at_once(app: Taskforge) -> None:
    runs: list[str] = []

    @app.task(name="rp.dont", max_retries=2, retry_backoff=0, dont_retry_on=(ValueError,))
    def dont(kind: str) -> None:
        runs.append(kind)
        raise ValueError("bad input") if kind == "value" else OSError("flaky")

    value, flaky = dont.delay("value"), dont.delay("os")

    await drain(app)

    assert runs.count("value") == 1
    assert runs.count("os") == 3
    assert value.info().error == "bad input"
    assert flaky.info().status is JobStatus.DEAD


async def test_fail_ends_the_job_dead_at_once_whatever_the_budget(app: Taskforge) -> None:
    runs: list[int] = []

    @app.task(name="rp.fail", max_retries=5, retry_backoff=0)
    def reject(address: str) -> None:
        runs.append(1)
        try:
            raise LookupError(f"no mailbox {address}")
        except LookupError as exc:
            raise Fail(f"undeliverable: {address}") from exc

    handle = reject.delay("nobody@example.invalid")

    stats = await drain(app)

    info = handle.info()
    assert runs == [1]
    assert (info.status, info.attempts) == (JobStatus.DEAD, 1)
    assert (info.error_type, info.error) == ("Fail", "undeliverable: nobody@example.invalid")
    assert "LookupError: no mailbox" in (info.traceback or "")  # the cause is kept
    assert (stats.dead, stats.retried) == (1, 0)


async def test_retry_records_its_cause_as_the_jobs_error(app: Taskforge) -> None:
    @app.task(name="rp.cause", max_retries=3)
    def fetch() -> None:
        try:
            raise ConnectionResetError("peer reset")
        except ConnectionResetError as exc:
            raise Retry(countdown_s=3600, exc=exc) from exc

    handle = fetch.delay()

    await drain(app)  # the retry is an hour away: the burst ends with the job waiting

    info = handle.info()
    assert info.status is JobStatus.RETRYING
    assert (info.error_type, info.error) == ("ConnectionResetError", "peer reset")
    assert "ConnectionResetError: peer reset" in (info.traceback or "")


async def test_a_deliberate_retry_retries_even_outside_retry_on(app: Taskforge) -> None:
    runs: list[int] = []

    @app.task(name="rp.asked", max_retries=2, retry_on=(ConnectionError,))
    def asked() -> str:
        runs.append(1)
        if len(runs) < 2:
            raise Retry(countdown_s=0, exc=KeyError("not ready"))
        return "done"

    handle = asked.delay()

    await drain(app)

    assert handle.result(timeout=5) == "done"
    assert len(runs) == 2


async def test_max_retries_none_retries_until_it_succeeds(app: Taskforge) -> None:
    runs: list[int] = []

    @app.task(name="rp.forever", max_retries=None, retry_backoff=0)
    def stubborn() -> int:
        runs.append(1)
        if len(runs) <= 30:
            raise TimeoutError("upstream busy")
        return len(runs)

    handle = stubborn.delay()

    await drain(app)

    assert handle.result(timeout=5) == 31
    assert handle.info().attempts == 31


async def test_options_max_retries_none_overrides_and_unset_keeps(app: Taskforge) -> None:
    @app.task(name="rp.opts", max_retries=2)
    def noop() -> None: ...

    assert noop.options(max_retries=None).opts.max_retries is None
    assert noop.options(queue="other").opts.max_retries == 2
    handle = noop.options(max_retries=None).delay()
    job = handle.info().job
    assert job is not None and job.max_retries is None


def test_backoff_of_a_very_late_retry_is_the_cap_not_an_overflow() -> None:
    assert backoff_s(5000, base_s=60, cap_s=3600) == 3600
    assert backoff_s(5000, base_s=0, cap_s=3600) == 0


async def test_the_log_says_retrying_for_retry_and_failed_for_an_error(
    app: Taskforge, caplog: pytest.LogCaptureFixture
) -> None:
    @app.task(name="rp.log", max_retries=1, retry_backoff=3600)
    def logged(kind: str) -> None:
        if kind == "asked":
            raise Retry(countdown_s=3600, reason="rate limited upstream")
        raise RuntimeError("boom")

    asked, broken = logged.delay("asked"), logged.delay("broken")

    with caplog.at_level(logging.INFO, logger="taskforge.worker"):
        await drain(app)

    lines = {
        r.getMessage().split()[1]: r.getMessage()
        for r in caplog.records
        if "retry in" in r.getMessage()
    }
    assert "rp.log retrying attempt=1" in lines[asked.id]
    assert "rate limited upstream" in lines[asked.id]
    assert "rp.log failed attempt=1" in lines[broken.id]


# ------------------------------------------------------------------ bad options, at decoration


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"retry_on": ValueError}, "retry_on=(ValueError,)"),
        ({"retry_on": (ValueError, int)}, "not an exception class"),
        ({"dont_retry_on": ["ValueError"]}, "must be a tuple of exception classes"),
        ({"max_retries": -1}, "max_retries must be an int >= 0, or None"),
        ({"max_retries": 2.5}, "max_retries must be an int >= 0, or None"),
        ({"retry_backoff_cap": math.inf}, "retry_backoff_cap must be a finite number"),
    ],
)
def test_bad_retry_options_are_refused_at_decoration(options: dict[str, object], says: str) -> None:
    app = Taskforge(Settings(redis_url="memory://bad-options"))

    with pytest.raises(ConfigurationError, match=says.replace("(", r"\(").replace(")", r"\)")):
        app.task(name="rp.bad", **options)(lambda: None)  # type: ignore[call-overload]

    assert "rp.bad" not in app.registry


@pytest.mark.parametrize("countdown", [math.nan, math.inf, -1.0, "5"])
def test_a_retry_countdown_that_cannot_be_scheduled_is_refused_when_raised(
    countdown: object,
) -> None:
    with pytest.raises(ConfigurationError, match="countdown_s must be a finite number"):
        Retry(countdown_s=countdown)  # type: ignore[arg-type]
