"""The producer API: @task, direct calls, options, and refusals at .delay() that write nothing."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from taskforge import (
    BrokerConnectionError,
    ConfigurationError,
    EnqueueError,
    JobPriority,
    JobStatus,
    PayloadTooLargeError,
    SerializationError,
    Settings,
    Taskforge,
)
from taskforge.client import BULK_CHUNK
from taskforge.protocol.keys import QueueKeys
from tests.support.redis_server import free_port

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def keys_under(redis_url: str, prefix: str) -> list[str]:
    """Every key this test's prefix owns on the test Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    finally:
        client.close()


# ------------------------------------------------------------------ registering


def test_bare_decorator_names_the_task_after_module_and_function(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add.name == (
        f"{__name__}.test_bare_decorator_names_the_task_after_module_and_function.<locals>.add"
    )
    assert app.registry.get(add.name) is add
    assert add.opts.priority is JobPriority.NORMAL
    assert add.opts.max_retries == 3


def test_decorator_options_are_kept(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(name="email.send", queue="mail", priority="HIGH", max_retries=5, timeout=30)
    async def send(to: str) -> str:
        return to

    assert send.name == "email.send"
    assert send.opts.queue == "mail"
    assert send.opts.priority is JobPriority.HIGH
    assert send.opts.max_retries == 5
    assert send.opts.timeout == 30
    assert send.is_async
    assert "email.send" in app.registry


def test_calling_a_sync_task_runs_the_function_here(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, 3) == 5
    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


@pytest.mark.anyio
async def test_calling_an_async_task_gives_its_coroutine(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def mul(a: int, b: int) -> int:
        return a * b

    assert await mul(4, 5) == 20


def test_defining_tasks_connects_to_nothing() -> None:
    # A port nobody listens on: any connection attempt at import/decoration time would fail.
    app = Taskforge(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", connect_retries=0))

    @app.task(name="never.sent")
    def never() -> None: ...

    assert app.registry.names() == ["never.sent"]
    assert app._client is None


def test_two_functions_cannot_share_a_task_name(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(name="report.build")
    def first() -> None: ...

    with pytest.raises(ConfigurationError, match=r"report\.build"):

        @app.task(name="report.build")
        def second() -> None: ...

    assert app.registry.get("report.build") is first


def test_registering_the_same_function_again_is_allowed(app_factory: AppFactory) -> None:
    app = app_factory()

    def build() -> None: ...

    app.task(name="report.build")(build)
    again = app.task(name="report.build")(build)

    assert app.registry.get("report.build") is again


# ------------------------------------------------------------------ option validation


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": -1},
        {"timeout": 0},
        {"timeout": math.nan},
        {"priority": "urgent"},
        {"max_retries": -1},
        {"retry_backoff": -0.5},
        {"queue": "bad{queue}"},
        {"queue": "has space"},
        {"unique_until": "forever"},
    ],
)
def test_invalid_options_are_refused_at_options(
    app_factory: AppFactory, options: dict[str, Any]
) -> None:
    app = app_factory()

    @app.task
    def job() -> None: ...

    with pytest.raises(ConfigurationError):
        job.options(**options)


@pytest.mark.parametrize(
    "options",
    [{"timeout": -1}, {"priority": "urgent"}, {"max_retries": -2}, {"name": "has space"}],
)
def test_invalid_decorator_options_are_refused(
    app_factory: AppFactory, options: dict[str, Any]
) -> None:
    app = app_factory()

    with pytest.raises(ConfigurationError):

        @app.task(**options)
        def job() -> None: ...


def test_naive_datetime_is_refused_and_nothing_is_written(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job() -> None: ...

    with pytest.raises(ConfigurationError, match="naive"):
        job.schedule(datetime.now() + timedelta(minutes=5))

    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


def test_negative_schedule_delay_is_refused(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job() -> None: ...

    with pytest.raises(ConfigurationError):
        job.schedule(-5)


# ------------------------------------------------------------------ refusals at .delay()


# bytes are carried now (base64; see tests/api/test_payloads.py); these are still refused.
@pytest.mark.parametrize("bad_arg", [object(), math.nan, math.inf, {1, 2}], ids=repr)
def test_non_json_arguments_raise_serialization_error_and_write_nothing(
    app_factory: AppFactory, bad_arg: object
) -> None:
    app = app_factory()

    @app.task
    def job(value: object) -> None: ...

    with pytest.raises(SerializationError) as caught:
        job.delay(bad_arg)

    assert isinstance(caught.value, EnqueueError)
    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


def test_payload_over_the_limit_raises_and_writes_nothing(app_factory: AppFactory) -> None:
    app = app_factory(max_payload_bytes=2048)

    @app.task
    def job(blob: str) -> None: ...

    with pytest.raises(PayloadTooLargeError, match="2048"):
        job.delay("x" * 4096)

    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


def test_payload_under_the_limit_is_accepted(app_factory: AppFactory) -> None:
    app = app_factory(max_payload_bytes=2048)

    @app.task
    def job(blob: str) -> None: ...

    handle = job.delay("x" * 1000)

    assert handle.status() is JobStatus.QUEUED


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 2}), ((1,), {"a": 1})],
)
def test_arguments_that_do_not_fit_raise_enqueue_error(
    app_factory: AppFactory, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    app = app_factory()

    @app.task
    def job(a: int, b: int = 0) -> None: ...

    with pytest.raises(EnqueueError, match="bad arguments"):
        job.delay(*args, **kwargs)

    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


def test_unreachable_redis_raises_broker_connection_error_with_masked_url() -> None:
    port = free_port()
    app = Taskforge(
        Settings(
            redis_url=f"redis://:hunter2@127.0.0.1:{port}/0",
            connect_retries=1,
            socket_connect_timeout_s=0.5,
        )
    )

    @app.task
    def job() -> None: ...

    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as caught:
        job.delay()

    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "***" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    app.client.close()


@pytest.mark.anyio
async def test_unreachable_redis_raises_broker_connection_error_async() -> None:
    app = Taskforge(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", connect_retries=0))

    @app.task
    async def job() -> None: ...

    with pytest.raises(BrokerConnectionError):
        await job.adelay()


# ------------------------------------------------------------------ what .delay() writes


def test_delay_writes_a_queued_job_carrying_the_call(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(name="math.add", max_retries=2, retry_backoff=5)
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.delay(2, b=3)

    info = handle.info()
    assert handle.created
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0
    assert info.job is not None
    assert info.job.task == "math.add"
    assert info.job.args == [2]
    assert info.job.kwargs == {"b": 3}
    assert info.job.max_retries == 2
    assert info.job.retry_backoff_s == 5


def test_per_call_options_travel_with_the_job(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    handle = add.options(
        priority="high", queue="math", job_id="sum-42", max_retries=0, timeout=5
    ).delay(1, 2)

    info = handle.info()
    assert handle.id == "sum-42"
    assert handle.queue == "math"
    assert info.job is not None
    assert info.job.priority is JobPriority.HIGH
    assert info.job.max_retries == 0
    assert info.job.timeout_s == 5
    assert add.opts.priority is JobPriority.NORMAL  # the original task is unchanged


def test_schedule_with_timedelta_or_aware_datetime_waits(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job() -> None: ...

    later = job.schedule(timedelta(minutes=5))
    at = datetime.now(UTC) + timedelta(hours=2)
    absolute = job.schedule(at)

    assert later.status() is JobStatus.SCHEDULED
    assert absolute.status() is JobStatus.SCHEDULED
    assert absolute.info().run_at_ms == int(at.timestamp() * 1000)
    now_ms = time.time() * 1000
    assert abs(later.info().run_at_ms - (now_ms + 300_000)) < 5_000  # type: ignore[operator]


@pytest.mark.anyio
async def test_adelay_and_aschedule_write_jobs(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def job(n: int) -> int:
        return n

    now = await job.adelay(1)
    later = await job.aschedule(60, 2)

    assert await now.astatus() is JobStatus.QUEUED
    assert await later.astatus() is JobStatus.SCHEDULED


def test_enqueue_many_returns_handles_in_call_order(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job(n: int) -> int:
        return n

    handles = app.enqueue_many([job.s(i) for i in range(5)] + [job.options(queue="other").s(9)])

    assert [h.info().job.args for h in handles] == [[0], [1], [2], [3], [4], [9]]  # type: ignore[union-attr]
    assert handles[-1].queue == "other"


def test_enqueue_many_with_one_bad_call_writes_nothing(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job(n: object) -> None: ...

    with pytest.raises(SerializationError):
        app.enqueue_many([job.s(1), job.s(object()), job.s(3)])

    assert keys_under(app.settings.redis_url, app.settings.prefix) == []


def test_same_job_id_twice_gives_the_existing_job(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def job(n: int) -> int:
        return n

    first = job.options(job_id="nightly-2026-11-25").delay(1)
    again = job.options(job_id="nightly-2026-11-25").delay(2)

    assert first.created and not again.created
    assert again.id == first.id
    info = again.info()
    assert info.job is not None and info.job.args == [1]


def _plain(a: int, b: int, c: int = 1, d: int = 2) -> None:
    return None


@given(
    n_args=st.integers(min_value=0, max_value=5),
    names=st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), unique=True, max_size=5),
)
def test_the_fast_argument_check_agrees_with_signature_bind(n_args: int, names: list[str]) -> None:
    # The shortcut may only accept what Signature.bind accepts, and for a function of plain
    # parameters it must accept all of it (or every bulk enqueue pays for bind again).
    app = Taskforge(Settings(redis_url="memory://fast-bind"))
    task = app.task(_plain)
    args, kwargs = tuple(range(n_args)), {name: 0 for name in names}
    try:
        inspect.signature(_plain).bind(*args, **kwargs)
        fits = True
    except TypeError:
        fits = False
    assert task._fits(args, kwargs) == fits
    if fits:
        return
    # One or two arguments short is a partial signature (a workflow step or on_failure
    # callback): .s() accepts it, but it cannot be sent alone.
    partial = False
    for lead in ((None,), (None, None)):
        try:
            inspect.signature(_plain).bind(*lead, *args, **kwargs)
            partial = True
        except TypeError:
            pass
    if partial:
        with pytest.raises(EnqueueError, match="missing an argument"):
            app.client.encode(task.s(*args, **kwargs))
    else:
        with pytest.raises(EnqueueError, match="bad arguments"):
            task.s(*args, **kwargs)


@pytest.mark.anyio
async def test_async_bulk_enqueue_in_chunks_keeps_call_order(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def job(i: int) -> None:
        return None

    raw = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)

    def script_calls() -> int:
        stats = raw.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))

    first = await job.adelay(-1)  # loads the script and announces the queue
    n = 2 * BULK_CHUNK + 7
    before = script_calls()
    handles = await app.aenqueue_many([job.s(i) for i in range(n)])

    assert script_calls() - before == 3  # two full chunks and the rest
    handles = [first, *handles]
    ready = raw.lrange(QueueKeys(app.settings.prefix, "default").ready(JobPriority.NORMAL), 0, -1)
    assert ready == [h.id for h in handles]
    assert all(h.created for h in handles)
