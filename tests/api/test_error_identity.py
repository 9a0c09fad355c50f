"""Errors keep their identity: the recorded type is the task's own (qualified), only the worker's
deadline is a JobTimeoutError, and result() raises TaskFailedError merged with the original class
when that class is safe to name. On memory:// and on a real Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import anyio
import pytest

from taskforge import JobFailedError, Settings, TaskFailedError, Taskforge, Worker
from taskforge.remote_errors import find_class, rebuild

pytestmark = pytest.mark.anyio


class CardDeclinedError(Exception):
    """A task module's own exception class, with a constructor of its own."""

    def __init__(self, card: str, code: int):
        self.code = code
        super().__init__(f"card {card} declined ({code})")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def app(any_url: str) -> Iterator[Taskforge]:
    app = Taskforge(Settings(redis_url=any_url, prefix=f"tei-{uuid.uuid4().hex[:8]}"))
    yield app
    app.client.close()


async def drain(app: Taskforge) -> None:
    worker = Worker(app.settings, app.registry, concurrency=2, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        await worker.run()


async def test_a_tasks_own_timeout_error_is_recorded_as_itself(app: Taskforge) -> None:
    @app.task(name="ei.upstream", max_retries=0)
    def upstream() -> None:
        raise TimeoutError("upstream")

    @app.task(name="ei.socket", max_retries=0, timeout=30)
    def sock() -> None:
        raise TimeoutError("read timed out after 9 ms")

    @app.task(name="ei.async_own", max_retries=0, timeout=30)
    async def async_own() -> None:
        raise TimeoutError("pool exhausted")

    a, b, c = upstream.delay(), sock.delay(), async_own.delay()

    await drain(app)

    assert (a.info().error_type, a.info().error) == ("TimeoutError", "upstream")
    assert (b.info().error_type, b.info().error) == ("TimeoutError", "read timed out after 9 ms")
    assert (c.info().error_type, c.info().error) == ("TimeoutError", "pool exhausted")


async def test_only_the_workers_deadline_is_a_job_timeout(app: Taskforge) -> None:
    @app.task(name="ei.slow_async", max_retries=0, timeout=0.2)
    async def slow_async() -> None:
        await anyio.sleep(30)

    @app.task(name="ei.slow_sync", max_retries=0, timeout=0.2)
    def slow_sync() -> None:
        while True:
            pass

    a, s = slow_async.delay(), slow_sync.delay()

    await drain(app)

    for handle in (a, s):
        info = handle.info()
        assert info.error_type == "JobTimeoutError"
        assert info.error == "timed out after 0.2s (the task's timeout)"
        with pytest.raises(TaskFailedError) as failed:
            handle.result(timeout=1)
        assert failed.value.exc_type == "JobTimeoutError"


async def test_result_reraises_a_builtin_as_its_class_with_the_traceback(app: Taskforge) -> None:
    @app.task(name="ei.parse", max_retries=0)
    def parse(text: str) -> int:
        return int(text)

    handle = parse.delay("forty-two")

    await drain(app)

    with pytest.raises(ValueError, match="invalid literal for int") as caught:
        handle.result(timeout=1)
    error = caught.value
    assert isinstance(error, TaskFailedError) and isinstance(error, JobFailedError)
    assert error.exc_type == "ValueError"
    assert error.message == "invalid literal for int() with base 10: 'forty-two'"
    assert "in parse" in error.traceback and "ValueError: invalid literal" in error.traceback
    assert error.job_id == handle.id and error.status == "dead"


async def test_result_reraises_a_task_modules_own_class_by_qualified_name(
    app: Taskforge,
) -> None:
    @app.task(name="ei.charge", max_retries=0)
    def charge(card: str) -> None:
        raise CardDeclinedError(card, 51)

    handle = charge.delay("4242")

    await drain(app)

    assert handle.info().error_type == f"{__name__}.CardDeclinedError"
    with pytest.raises(CardDeclinedError) as caught:
        await handle.aresult(timeout=1)
    assert isinstance(caught.value, TaskFailedError)
    assert caught.value.message == "card 4242 declined (51)"
    assert str(caught.value).endswith(f"{__name__}.CardDeclinedError: card 4242 declined (51)")


async def test_a_class_outside_the_task_modules_stays_a_plain_task_failed_error(
    app: Taskforge,
) -> None:
    @app.task(name="ei.decode", max_retries=0)
    def decode(text: str) -> None:
        json.loads(text)

    handle = decode.delay("{")

    await drain(app)

    with pytest.raises(TaskFailedError) as caught:
        handle.result(timeout=1)
    assert type(caught.value) is TaskFailedError  # json is no task's module: not named
    assert caught.value.exc_type == "json.decoder.JSONDecodeError"


def test_only_safe_classes_are_named() -> None:
    assert find_class("KeyError", ()) is KeyError
    assert find_class("SystemExit", ()) is None  # BaseException only: never re-raised
    assert find_class("print", ()) is None
    assert find_class("os.system", ["os"]) is None  # not a class
    assert find_class("json.decoder.JSONDecodeError", []) is None  # no task there
    assert find_class("never_imported_mod.Error", ["never_imported_mod"]) is None  # no import


def test_a_merged_os_error_prints_the_record_not_an_errno() -> None:
    error = rebuild("j1", "dead", "ConnectionRefusedError", "refused", "tb text")

    assert isinstance(error, ConnectionRefusedError) and isinstance(error, TaskFailedError)
    assert str(error) == "job j1 ended dead: ConnectionRefusedError: refused"
    assert error.errno is None
