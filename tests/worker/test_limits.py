"""Rate and concurrency limits per task, held in Redis across real worker processes."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable

import anyio
import pytest
import redis
from redis.crc import key_slot

from taskforge import (
    ConfigurationError,
    JobFailedError,
    JobPriority,
    JobStatus,
    Settings,
    Taskforge,
    Worker,
    current_job,
)
from taskforge.client import Client
from taskforge.cron.runner import Scheduler
from taskforge.driver.requests import ScriptCall
from taskforge.limits import RateLimit
from taskforge.limits.acquire import Limiter
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.ops import Ops
from taskforge.protocol.records import NewJob
from tests.support.cluster import LocalCluster
from tests.support.timetasks import QUIET, key, wait_until

AppFactory = Callable[..., Taskforge]
WorkerProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.mark.parametrize(
    ("spec", "limit", "window_ms"),
    [("100/m", 100, 60_000), ("10/s", 10, 1000), ("5/30s", 5, 30_000), ("1/d", 1, 86_400_000)],
)
def test_rate_limit_spec_gives_count_and_window(spec: str, limit: int, window_ms: int) -> None:
    assert RateLimit.parse(spec) == RateLimit(limit, window_ms)


@pytest.mark.parametrize("spec", ["100", "0/m", "10/w", "ten/s", "5/0s"])
def test_bad_rate_limit_is_refused_at_decoration(app_factory: AppFactory, spec: str) -> None:
    app = app_factory()

    with pytest.raises(ConfigurationError, match="rate_limit"):

        @app.task(rate_limit=spec)
        def send() -> None: ...


@pytest.mark.anyio
async def test_task_without_limits_makes_no_redis_call() -> None:
    app = Taskforge(Settings(redis_url="redis://127.0.0.1:1/0", socket_connect_timeout_s=0.2))

    @app.task
    def plain() -> None: ...

    limiter = Limiter(AsyncBroker(app.settings))  # unreachable: any call would fail

    assert await limiter.acquire(plain, "job-1") is None


def _finished(app: Taskforge, handles: list) -> list:  # type: ignore[type-arg]
    broker = app.client.broker
    ids = [h.id for h in handles]
    records = broker.run(broker.ops.records("default", ids))
    return [rec for rec in records if rec is not None and rec.is_final]


def test_concurrency_limit_holds_across_two_workers(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    handles = app.enqueue_many([app.call("limits.email", n) for n in range(12)])

    for _ in range(2):
        worker_process(*QUIET, "-c", "5")
    wait_until(lambda: len(_finished(app, handles)) == 12, timeout_s=30)

    concurrent = [int(x) for x in r.lrange(key("concurrent", prefix), 0, -1)]
    records = _finished(app, handles)
    assert len(concurrent) == 12
    assert max(concurrent) == 2, f"running at once (ledger): {concurrent}"
    assert all(rec.status is JobStatus.SUCCEEDED and rec.attempts == 1 for rec in records)
    assert any(rec.deliveries > 1 for rec in records), "no job ever waited for a slot"


def test_rate_limit_holds_across_two_workers_per_window(
    app_factory: AppFactory, worker_process: WorkerProcess, r: redis.Redis, prefix: str
) -> None:
    app = app_factory()
    handles = app.enqueue_many([app.call("limits.rated", n) for n in range(12)])

    for _ in range(2):
        worker_process(*QUIET, "-c", "6")
    wait_until(lambda: len(_finished(app, handles)) == 12, timeout_s=30)

    starts_ms = [int(x) for x in r.lrange(key("rated", prefix), 0, -1)]
    per_window = Counter(ms // 1000 for ms in starts_ms)
    records = _finished(app, handles)
    assert len(starts_ms) == 12
    assert max(per_window.values()) <= 4, f"starts per 1s window: {sorted(per_window.items())}"
    assert len(per_window) >= 3
    assert all(rec.status is JobStatus.SUCCEEDED and rec.attempts == 1 for rec in records)


@pytest.mark.anyio
async def test_slot_of_a_dead_worker_frees_itself_after_its_lease(
    settings_factory: Callable[..., Settings],
) -> None:
    broker = AsyncBroker(settings_factory(lease_s=0.3))
    ops = broker.ops

    first = await broker.run(ops.slot_acquire("email.send", "job-a", 1))
    refused = await broker.run(ops.slot_acquire("email.send", "job-b", 1))
    with anyio.fail_after(5):
        while await broker.run(ops.slot_acquire("email.send", "job-b", 1)):
            await anyio.sleep(0.05)  # bounded by fail_after: the slot lapses after 0.3 s

    assert first == 0
    assert refused > 0
    await broker.aclose()


def test_limit_and_progress_scripts_touch_one_hash_slot_each() -> None:
    ops = Ops(Settings(prefix="tf"))
    calls = [
        (ops.rate_acquire("email.send", 10, 1000), "{email.send}"),
        (ops.slot_acquire("email.send", "j1", 2), "{email.send}"),
        (ops.slot_extend("email.send", ["j1"]), "{email.send}"),
        (ops.progress("orders", [("j1", "1", 0.5, "half")]), "{orders}"),
        (
            ops.cron_claim(
                "orders", "nightly", None, 1, [(1, NewJob("j", "t", JobPriority.LOW, "{}"))]
            ),
            "{orders}",
        ),
    ]

    for op, tag in calls:
        request = next(op)
        assert isinstance(request, ScriptCall)
        assert {key_slot(k.encode()) for k in request.keys} == {key_slot(tag.encode())}, (
            request.name
        )


@pytest.mark.anyio
async def test_a_job_waiting_for_a_slot_can_be_cancelled_and_never_runs(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    ran: list[int] = []
    release = anyio.Event()

    @app.task(concurrency=1)
    async def exclusive(n: int) -> None:
        ran.append(n)
        await release.wait()

    first = await exclusive.adelay(1)
    waiting = await exclusive.adelay(2)
    worker = Worker(app.settings, app.registry, concurrency=4, burst=True, block_s=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            while ran != [1] or (await waiting.ainfo()).deliveries < 2:
                await anyio.sleep(0.02)  # bounded by fail_after: until it waited for the slot

        await waiting.acancel()
        release.set()

        await first.aresult(timeout=10)
        with pytest.raises(JobFailedError) as failed:
            await waiting.aresult(timeout=10)
    assert failed.value.status == "cancelled"
    assert ran == [1]


@pytest.mark.slow
@pytest.mark.anyio
async def test_cron_limits_and_progress_run_on_redis_cluster() -> None:
    try:
        cluster = LocalCluster(primaries=3).start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Redis Cluster: {exc}")
    try:
        app = Taskforge(Settings(redis_url=cluster.url, prefix="tf-cluster-limits"))

        @app.task(name="c.tick", cron="* * * * * *", catch_up="once")
        def tick() -> None: ...

        @app.task(name="c.limited", concurrency=1, rate_limit="5/s")
        async def limited() -> None:
            current_job().set_progress(1.0, "done")
            await anyio.sleep(0.2)  # progress is kept while the job runs

        broker = AsyncBroker(app.settings)
        schedulers = [
            Scheduler(broker, app.registry.periodics(), encode=Client(app.settings).encode)
            for _ in range(3)
        ]
        for s in schedulers:
            await s.run_once()  # first sight
        await anyio.sleep(1.1)  # let one tick pass
        claimed = [await s.run_once() for s in schedulers]
        handles = [await limited.adelay() for _ in range(3)]
        worker = Worker(app.settings, app.registry, concurrency=4, burst=True, block_s=0.5)
        with anyio.fail_after(20):
            stats = await worker.run()

        assert sorted(claimed) == [0, 0, 1]
        assert stats.succeeded == 4 and stats.deferred >= 1
        assert [(await h.ainfo()).progress for h in handles] == [1.0, 1.0, 1.0]
        await broker.aclose()
    finally:
        cluster.cleanup()
