"""Middleware hooks and envelope headers, on a real Redis with burst-mode workers."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from taskforge import (
    ConfigurationError,
    JobContext,
    JobStatus,
    Middleware,
    RunOutcome,
    SerializationError,
    Taskforge,
    Worker,
)
from taskforge.job import JobPriority
from taskforge.middleware import Enqueueing
from taskforge.protocol.brokers import AsyncBroker, SyncBroker
from taskforge.protocol.records import NewJob
from taskforge.worker import WorkerStats

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def drain(app: Taskforge, **options: Any) -> WorkerStats:
    """Run a burst worker with the app's middleware until the queue is empty (bounded)."""
    worker = Worker(
        app.settings, app.registry, burst=True, block_s=0.5, middleware=app.middleware, **options
    )
    with anyio.fail_after(20):
        return await worker.run()


class Recorder(Middleware):
    """Notes every hook call as (name, hook, detail); mixes sync and async hooks."""

    def __init__(self, name: str, calls: list[tuple[str, str, Any]]):
        self.name = name
        self.calls = calls

    def on_enqueue(self, job: Enqueueing) -> None:
        job.headers[f"x-{self.name}"] = job.task
        self.calls.append((self.name, "on_enqueue", job.job_id))

    async def before_run(self, ctx: JobContext) -> None:
        self.calls.append((self.name, "before_run", dict(ctx.job.headers)))

    def after_run(self, ctx: JobContext, outcome: RunOutcome) -> None:
        self.calls.append((self.name, "after_run", outcome))

    async def on_retry(self, ctx: JobContext, outcome: RunOutcome) -> None:
        self.calls.append((self.name, "on_retry", outcome))

    def on_dead(self, ctx: JobContext, outcome: RunOutcome) -> None:
        self.calls.append((self.name, "on_dead", outcome))

    async def on_worker_start(self, worker: Worker) -> None:
        self.calls.append((self.name, "on_worker_start", worker.id))

    def on_worker_stop(self, worker: Worker) -> None:
        self.calls.append((self.name, "on_worker_stop", worker.id))


def hooks_of(calls: list[tuple[str, str, Any]], hook: str) -> list[tuple[str, Any]]:
    return [(name, detail) for name, h, detail in calls if h == hook]


async def test_hooks_run_in_order_around_a_job_and_see_its_headers(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("a", calls))
    app.add_middleware(Recorder("b", calls))

    @app.task(name="mw.add")
    def add(x: int, y: int) -> int:
        return x + y

    handle = add.delay(1, 2)
    await drain(app)

    assert await handle.aresult(timeout=5) == 3
    assert [h for _, h, _ in calls] == [
        "on_enqueue", "on_enqueue", "on_worker_start", "on_worker_start",
        "before_run", "before_run", "after_run", "after_run", "on_worker_stop", "on_worker_stop",
    ]  # fmt: skip
    assert [n for n, _ in hooks_of(calls, "before_run")] == ["a", "b"]
    assert [n for n, _ in hooks_of(calls, "after_run")] == ["b", "a"]  # onion order
    headers = hooks_of(calls, "before_run")[0][1]
    assert headers == {"x-a": "mw.add", "x-b": "mw.add"}
    outcome = hooks_of(calls, "after_run")[0][1]
    assert outcome.status == "succeeded"
    assert 0 < outcome.duration_s < 10
    assert app.client.record("default", handle.id).job.headers == headers  # type: ignore[union-attr]


async def test_before_run_failure_fails_the_attempt_and_the_job_retries(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    calls: list[tuple[str, str, Any]] = []
    failures = [RuntimeError("session pool empty")]

    class FlakySession(Middleware):
        def before_run(self, ctx: JobContext) -> None:
            if failures:
                raise failures.pop()

    app.add_middleware(FlakySession())
    app.add_middleware(Recorder("r", calls))
    ran: list[int] = []

    @app.task(name="mw.work", max_retries=2, retry_backoff=0)
    def work() -> str:
        ran.append(1)
        return "done"

    handle = work.delay()
    stats = await drain(app)

    assert await handle.aresult(timeout=5) == "done"
    assert ran == [1]  # the failed attempt never reached the task
    assert stats.retried == 1
    (_, retry), = hooks_of(calls, "on_retry")  # fmt: skip
    assert retry.status == "retrying"
    assert (retry.error_type, retry.error) == ("RuntimeError", "session pool empty")
    assert isinstance(retry.exception, RuntimeError)
    assert retry.retry_in_s == 0
    assert app.client.record("default", handle.id).attempts == 2


async def test_after_run_failure_is_logged_and_the_outcome_stands(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()

    class Broken(Middleware):
        async def after_run(self, ctx: JobContext, outcome: RunOutcome) -> None:
            raise ValueError("audit log down")

    app.add_middleware(Broken())

    @app.task(name="mw.ok")
    async def ok() -> str:
        return "kept"

    handle = await ok.adelay()
    with caplog.at_level(logging.ERROR, logger="taskforge.middleware"):
        stats = await drain(app)

    assert await handle.aresult(timeout=5) == "kept"
    assert stats.succeeded == 1
    assert "Broken.after_run failed; the job's outcome stands" in caplog.text
    assert "audit log down" in caplog.text


async def test_on_dead_gets_the_live_exception_of_a_dead_job(app_factory: AppFactory) -> None:
    app = app_factory()
    calls: list[tuple[str, str, Any]] = []
    app.add_middleware(Recorder("r", calls))

    @app.task(name="mw.boom", max_retries=0)
    def boom() -> None:
        raise KeyError("missing")

    await boom.adelay()
    await drain(app)

    (_, dead), = hooks_of(calls, "on_dead")  # fmt: skip
    assert dead.status == "dead" and dead.failed
    assert isinstance(dead.exception, KeyError)
    assert "KeyError" in (dead.traceback or "")


async def test_a_header_that_is_not_a_string_is_refused_at_the_call(
    app_factory: AppFactory,
) -> None:
    app = app_factory()

    class Bad(Middleware):
        def on_enqueue(self, job: Enqueueing) -> None:
            job.headers["tenant"] = 42  # type: ignore[assignment]

    app.add_middleware(Bad())

    @app.task(name="mw.t")
    def t() -> None:
        return None

    with pytest.raises(SerializationError, match="header 'tenant': 42 is not str -> str"):
        t.delay()
    counts = await AsyncBroker(app.settings).run(AsyncBroker(app.settings).ops.counts("default"))
    assert counts.ready_total == 0


def test_async_on_enqueue_is_refused_with_what_to_write(app_factory: AppFactory) -> None:
    app = app_factory()

    class AsyncEnqueue(Middleware):
        async def on_enqueue(self, job: Enqueueing) -> None:  # type: ignore[override]
            return None

    app.add_middleware(AsyncEnqueue())

    @app.task(name="mw.t2")
    def t2() -> None:
        return None

    with pytest.raises(ConfigurationError, match="make it a plain def"):
        t2.delay()


def test_add_middleware_refuses_what_is_not_middleware(app_factory: AppFactory) -> None:
    app = app_factory()

    with pytest.raises(ConfigurationError, match=r"subclass taskforge\.Middleware"):
        app.add_middleware(object())  # type: ignore[arg-type]


async def test_signed_headers_cannot_be_changed_in_redis(app_factory: AppFactory) -> None:
    app = app_factory(signing_key="k3y")

    class Tenant(Middleware):
        def on_enqueue(self, job: Enqueueing) -> None:
            job.headers["tenant"] = "acme"

    app.add_middleware(Tenant())
    ran: list[str] = []

    @app.task(name="mw.sig")
    def sig() -> None:
        ran.append("ran")

    queue, honest = app.client.encode(sig.s())
    forged_fields = tuple(f.replace('"tenant":"acme"', '"tenant":"evil"') for f in honest.fields)
    assert forged_fields != honest.fields
    broker = SyncBroker(app.settings)
    forged = NewJob("forged", "mw.sig", JobPriority.NORMAL, forged_fields)
    broker.run(broker.ops.enqueue(queue, [honest, forged]))
    broker.close()
    await drain(app)

    assert ran == ["ran"]  # the honest one
    assert app.client.record(queue, honest.id).job.headers == {"tenant": "acme"}  # type: ignore[union-attr]
    rec = app.client.record(queue, "forged")
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "SignatureError"


# ------------------------------------------------------------------ events and the JSON line


async def test_final_and_retry_events_carry_duration_worker_and_next_run(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    tries: list[int] = []

    @app.task(name="ev.flaky", max_retries=1, retry_backoff=0.05)
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("flaky")
        return "ok"

    listener = AsyncBroker(app.settings)
    subscribed = anyio.Event()
    events: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []

    async def listen() -> None:
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            events.append(json.loads(data))
            if events[-1]["status"] == "succeeded":
                return

    worker = Worker(app.settings, app.registry, burst=True, block_s=0.5, outcome_log=lines.append)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await subscribed.wait()
            handle = await flaky.adelay()
            await worker.run()
    await listener.aclose()

    retrying = next(e for e in events if e["status"] == "retrying")
    succeeded = events[-1]
    assert retrying["worker"] == succeeded["worker"] == worker.id
    assert retrying["run_at"] >= retrying["timestamp"] + 0.04
    assert retrying["duration_ms"] >= 0 and succeeded["duration_ms"] >= 0
    assert retrying["error"] == "OSError: flaky"
    assert [line["status"] for line in lines] == ["retrying", "succeeded"]
    for line, event in zip(lines, [retrying, succeeded], strict=True):
        assert set(event) <= set(line)
        assert (line["job_id"], line["worker"], line["attempt"]) == (
            handle.id, event["worker"], event["attempt"]
        )  # fmt: skip
    assert lines[0]["run_at"] >= lines[0]["timestamp"]


def test_worker_json_option_prints_one_line_per_outcome(
    worker_process: Callable[..., Any], redis_url: str, prefix: str
) -> None:
    from tests.support.tasks_e2e import app, record

    app.configure(redis_url=redis_url, prefix=prefix)
    handle = record.delay("one")

    proc = worker_process(
        "tests.support.tasks_e2e:app", "--burst", "--json", "--log-level", "WARNING"
    )
    out, _ = proc.communicate(timeout=60)

    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    assert proc.returncode == 0, out.decode()
    (line,) = lines
    assert line["job_id"] == handle.id
    assert line["status"] == "succeeded"
    assert line["task"] == "e2e.record"
    assert line["worker"].count(":") == 2 and line["duration_ms"] >= 0


def test_error_reporting_example_reports_each_failed_attempt_with_its_request_id() -> None:
    from tests.features.test_examples import ROOT, run_example

    out = run_example(ROOT / "examples" / "error_reporting.py")

    lines = out.splitlines()
    assert lines[0].startswith("[retry] ValueError: cannot charge -1 cents task=billing.charge")
    assert "attempt=1 request=req-42 exception=ValueError" in lines[0]
    assert lines[1].startswith("[DEAD] ValueError") and "attempt=2" in lines[1]
    assert lines[2:] == ["good: succeeded", "bad: dead"]


async def test_before_run_failure_follows_the_tasks_retry_filter(app_factory: AppFactory) -> None:
    app = app_factory()

    class Broken(Middleware):
        def before_run(self, ctx: JobContext) -> None:
            raise ValueError("bad session config")

    app.add_middleware(Broken())

    @app.task(name="mw.filtered", max_retries=3, retry_backoff=0, retry_on=(ConnectionError,))
    def filtered() -> None: ...

    handle = filtered.delay()
    stats = await drain(app)

    rec = app.client.record("default", handle.id)
    assert (rec.status, rec.attempts, stats.retried) == (JobStatus.DEAD, 1, 0)
    assert rec.error_type == "ValueError"
