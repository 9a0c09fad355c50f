"""Typed payloads: arguments and results carry datetime/date/time/timedelta, UUID, Decimal,
bytes, enums and pydantic models, typed back by the task's annotations; what cannot be carried
is refused at .delay() (arguments) or fails the job (results). On memory:// and a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import anyio
import pytest
from pydantic import BaseModel

from taskforge import JobStatus, SerializationError, Settings, Taskforge, Worker
from taskforge.serializer import SerializerRefusedError

pytestmark = pytest.mark.anyio


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Order(BaseModel):
    id: int
    total: Decimal
    placed: datetime


WHEN = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ORDER = Order(id=7, total=Decimal("19.99"), placed=WHEN)
BLOB = bytes(range(256))  # not UTF-8: only base64 carries it


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def prefix_of_test() -> str:
    return f"tpl-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(any_url: str, prefix_of_test: str) -> Iterator[Taskforge]:
    app = Taskforge(Settings(redis_url=any_url, prefix=prefix_of_test))
    yield app
    app.client.close()


async def drain(app: Taskforge) -> None:
    worker = Worker(app.settings, app.registry, concurrency=2, burst=True, block_s=0.5)
    with anyio.fail_after(30):
        await worker.run()


async def test_arguments_arrive_as_the_types_the_signature_names(app: Taskforge) -> None:
    received: dict[str, Any] = {}

    @app.task(name="pl.typed")
    def typed(
        when: datetime,
        day: date,
        at: time,
        span: timedelta,
        ident: UUID,
        amount: Decimal,
        blob: bytes,
        color: Color,
        order: Order,
        maybe: int = 0,
    ) -> None:
        given = dict(locals())
        del given["received"]  # the closure's own cell, not an argument
        received.update(given)

    ident = uuid.uuid4()
    args = (WHEN, WHEN.date(), time(12, 30, 1, 5), timedelta(days=2, microseconds=3))
    typed.delay(*args, ident, Decimal("0.10"), BLOB, Color.BLUE, order=ORDER)

    await drain(app)

    assert received == {
        "when": WHEN, "day": WHEN.date(), "at": time(12, 30, 1, 5),
        "span": timedelta(days=2, microseconds=3), "ident": ident, "amount": Decimal("0.10"),
        "blob": BLOB, "color": Color.BLUE, "order": ORDER, "maybe": 0,
    }  # fmt: skip
    assert type(received["amount"]) is Decimal and type(received["order"]) is Order


async def test_star_args_and_async_tasks_are_typed_too(app: Taskforge) -> None:
    received: list[Any] = []

    @app.task(name="pl.star")
    async def star(*whens: datetime, **ids: UUID) -> None:
        received.extend([whens, ids])

    ident = uuid.uuid4()
    star.delay(WHEN, WHEN + timedelta(seconds=1), a=ident)

    await drain(app)

    assert received == [(WHEN, WHEN + timedelta(seconds=1)), {"a": ident}]


async def test_results_are_typed_by_the_return_annotation(app: Taskforge) -> None:
    @app.task(name="pl.order")
    def make_order(n: int) -> Order:
        return ORDER.model_copy(update={"id": n})

    @app.task(name="pl.blob")
    async def make_blob() -> bytes:
        return BLOB

    @app.task(name="pl.untyped")
    def untyped():  # type: ignore[no-untyped-def]  # no annotation: the JSON form comes back
        return WHEN

    o, b, u = make_order.delay(8), make_blob.delay(), untyped.delay()

    await drain(app)

    assert o.result(timeout=5) == ORDER.model_copy(update={"id": 8})
    assert b.result(timeout=5) == BLOB
    assert u.result(timeout=5) == WHEN.isoformat().replace("+00:00", "Z")
    assert o.info().result["total"] == "19.99"  # info() shows the stored JSON


async def test_an_argument_json_cannot_carry_is_refused_at_delay_with_its_path(
    app: Taskforge,
) -> None:
    @app.task(name="pl.refuse")
    def refuse(*values: Any, **named: Any) -> None: ...

    with pytest.raises(SerializationError, match=r"args\[1\] is a object, which JSON cannot"):
        refuse.delay(1, object())
    with pytest.raises(SerializationError, match=r"kwargs\['tags'\]\[2\] is a set"):
        refuse.delay(tags=[1, 2, {3}])
    with pytest.raises(SerializationError, match=r"args\[0\] is a float nan"):
        refuse.delay(float("nan"))
    with pytest.raises(SerializationError, match=r"kwargs\['m'\] key UUID"):
        refuse.delay(m={uuid.UUID(int=1): 1})

    assert app.client.broker.run(app.client.broker.ops.counts("default")).ready_total == 0


async def test_a_result_json_cannot_carry_fails_the_job_naming_the_type(app: Taskforge) -> None:
    ran: list[int] = []

    @app.task(name="pl.bad_result", max_retries=3)
    def bad_result() -> Any:
        ran.append(1)
        return {"ok": [1, {2, 3}]}

    @app.task(name="pl.after")
    def after() -> str:
        return "still running"

    bad, later = bad_result.delay(), after.delay()

    await drain(app)

    info = bad.info()
    assert ran == [1]  # its side effects ran once: never retried
    assert (info.status, info.error_type) == (JobStatus.DEAD, "SerializationError")
    assert "result['ok'][1] is a set, which JSON cannot carry" in (info.error or "")
    assert later.result(timeout=5) == "still running"


async def test_arguments_that_do_not_validate_end_the_job_at_once(app: Taskforge) -> None:
    ran: list[int] = []

    @app.task(name="pl.when", max_retries=3)
    def when(at: datetime) -> None:
        ran.append(1)

    handle = app.enqueue_many([app.call("pl.when", "not a date")])[0]  # the untyped door

    await drain(app)

    info = handle.info()
    assert ran == []
    assert (info.status, info.attempts, info.error_type) == (JobStatus.DEAD, 1, "ArgumentsError")
    assert "at" in (info.error or "") and "datetime" in (info.error or "")


async def test_the_pickle_serializer_covers_results(any_url: str, prefix_of_test: str) -> None:
    app = Taskforge(Settings(redis_url=any_url, prefix=prefix_of_test, serializer="pickle"))
    json_only = Taskforge(Settings(redis_url=any_url, prefix=prefix_of_test))

    @app.task(name="pl.pickled")
    def pickled() -> frozenset[int]:
        return frozenset({1, 2})

    handle = pickled.delay()
    await drain(app)

    assert handle.result(timeout=5) == frozenset({1, 2})
    with pytest.raises(SerializerRefusedError, match="accepts JSON only"):
        json_only.handle(handle.id).result(timeout=5)
    app.client.close()
    json_only.client.close()


async def test_a_caller_without_the_task_gets_the_stored_json(
    app: Taskforge, any_url: str, prefix_of_test: str
) -> None:
    @app.task(name="pl.when_done")
    def when_done() -> datetime:
        return WHEN

    handle = when_done.delay()
    await drain(app)
    stranger = Taskforge(Settings(redis_url=any_url, prefix=prefix_of_test))

    try:
        value = stranger.handle(handle.id).result(timeout=5)
    finally:
        stranger.client.close()

    assert handle.result(timeout=5) == WHEN
    assert value == "2030-01-02T03:04:05.678901Z"
