"""Testing mode on a real Redis warns about the server once per process, not on every ``.delay()``;
a real worker on the same server still warns when it starts."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import anyio
import pytest

from taskforge import Settings, Taskforge, Worker
from tests.redis_server import RedisServer

PERSISTENCE_OFF = "persistence is off"


@pytest.fixture
def unsaved_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone (RDB and AOF off), so no earlier test has drained on it."""
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"no redis-server: {exc}")
    yield server
    server.cleanup()


def persistence_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if PERSISTENCE_OFF in r.getMessage()]


async def burst_worker(app: Taskforge) -> None:
    with anyio.fail_after(20):
        await Worker(app.settings, app.registry, burst=True, block_s=0.5).run()


def test_eager_calls_warn_about_persistence_once_and_a_worker_still_warns(
    unsaved_redis: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Taskforge(Settings(redis_url=unsaved_redis.url, prefix=prefix))

    @app.task
    def add(a: int, b: int) -> int:
        return a + b

    caplog.set_level(logging.WARNING, logger="taskforge")
    with app.testing(redis_url=unsaved_redis.url):
        results = [add.delay(i, 1).result(timeout=5) for i in range(3)]
    with app.testing(redis_url=unsaved_redis.url) as bed:
        results.append(add.delay(3, 1).result(timeout=5))
        bed.drain()

    assert results == [1, 2, 3, 4]
    assert len(persistence_warnings(caplog)) == 1

    caplog.clear()
    anyio.run(burst_worker, app)

    assert len(persistence_warnings(caplog)) == 1
