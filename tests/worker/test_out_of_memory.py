"""A worker on a Redis at ``maxmemory`` (``noeviction``) pauses and runs no job twice (issue 12, 5).

A private redis-server with a small ``maxmemory`` is filled until it refuses writes while jobs run;
their outcomes cannot be written for longer than a lease. The worker must stop fetching, keep its
leases and its outcomes, say ``OOM`` plainly, and carry on when memory frees.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Iterator

import anyio
import pytest
import redis

from taskforge import Settings, Taskforge, Worker
from tests.support.redis_server import RedisServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs a redis-server"),
]

LEASE_S = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def small_server() -> Iterator[RedisServer]:
    server = RedisServer(args=["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"]).start()
    yield server
    server.stop()
    server.cleanup()


def fill(r: redis.Redis) -> int:
    """Write 2 MiB of padding, then set ``maxmemory`` half a MiB under what Redis now uses.

    Filling until a write is refused leaves Redis just under the limit once the refused
    command's buffers are freed, so small writes would still pass; this makes it surely full.
    Deleting the padding brings it back under the limit. Returns how many keys were written.
    """
    for n in range(32):
        r.set(f"pad:{n}", "x" * 65536)
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", used - 512 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        r.set("probe", "x")
    return 32


async def wait_for(predicate: object, limit_s: float = 20) -> None:
    assert callable(predicate)
    with anyio.fail_after(limit_s):
        while not predicate():
            await anyio.sleep(0.05)


async def test_at_oom_workers_pause_keep_their_leases_and_run_no_job_twice(
    small_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(redis_url=small_server.url, prefix="oom", lease_s=LEASE_S)
    app = Taskforge(settings)
    runs: Counter[int] = Counter()
    release = anyio.Event()

    @app.task(name="oom.job")
    async def job(n: int) -> int:
        runs[n] += 1
        if n < 3:
            await release.wait()
        return n

    handles = [job.delay(n) for n in range(11)]  # 0-2 hold worker A's slots; 3-10 wait
    holder = Worker(settings, app.registry, concurrency=3, block_s=0.5)
    other = Worker(settings, app.registry, concurrency=1, block_s=0.5)
    r = small_server.client()

    with caplog.at_level(logging.INFO, logger="taskforge"), anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await wait_for(lambda: runs[0] and runs[1] and runs[2])
            assert fill(r) > 0
            tg.start_soon(other.run)  # an idle worker that would take the waiting jobs
            release.set()  # jobs 0-2 end while Redis refuses their outcomes
            await wait_for(lambda: "OOM" in caplog.text)
            # The fault must outlast the lease for the test to mean anything.
            await anyio.sleep(3 * LEASE_S)
            ran_during_oom = dict(runs)
            r.delete(*[f"pad:{i}" for i in range(32)])
            await wait_for(lambda: holder.stats.succeeded + other.stats.succeeded >= 11)
            holder.stop()
            other.stop()

    assert ran_during_oom == {0: 1, 1: 1, 2: 1}  # nothing was fetched while Redis was full
    assert runs == Counter({n: 1 for n in range(11)})
    for h in handles:
        assert app.client.record("default", h.id).status == "succeeded"
    assert "cannot reach Redis" not in caplog.text
    app.client.close()
