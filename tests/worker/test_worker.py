"""The worker in-process, in burst mode: order, retries, timeouts, dead letters, events, results."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis

from taskforge import (
    JobFailedError,
    JobNotFoundError,
    JobPriority,
    JobStatus,
    ResultTimeoutError,
    Retry,
    Taskforge,
    Worker,
    current_job,
)
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.keys import QueueKeys
from taskforge.worker import WorkerStats

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def drain(app: Taskforge, *, concurrency: int = 1, limit_s: float = 20) -> WorkerStats:
    """Run a burst worker on ``app`` until its queue is empty (bounded)."""
    worker = Worker(app.settings, app.registry, concurrency=concurrency, burst=True, block_s=0.5)
    with anyio.fail_after(limit_s):
        return await worker.run()


def raw_redis(app: Taskforge) -> redis.Redis:
    return redis.Redis.from_url(app.settings.redis_url, decode_responses=True)


# ------------------------------------------------------------------ order


async def test_concurrency_one_runs_high_then_normal_then_low(app_factory: AppFactory) -> None:
    app = app_factory()
    ran: list[str] = []

    @app.task
    def record(label: str) -> None:
        ran.append(label)

    for i in range(2):
        await record.options(priority="low").adelay(f"low-{i}")
    for i in range(2):
        await record.adelay(f"normal-{i}")
    for i in range(2):
        await record.options(priority="high").adelay(f"high-{i}")

    stats = await drain(app)

    assert ran == ["high-0", "high-1", "normal-0", "normal-1", "low-0", "low-1"]
    assert stats.succeeded == 6


async def test_concurrency_runs_jobs_at_the_same_time(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def nap() -> None:
        await anyio.sleep(0.4)

    @app.task
    def sync_nap() -> None:
        time.sleep(0.4)

    for _ in range(4):
        await nap.adelay()
        await sync_nap.adelay()
    started = time.monotonic()

    stats = await drain(app, concurrency=8)

    assert stats.succeeded == 8
    assert time.monotonic() - started < 8 * 0.4 / 2  # serial would take 3.2 s


# ------------------------------------------------------------------ retries


async def test_failing_job_retries_with_backoff_then_succeeds(app_factory: AppFactory) -> None:
    app = app_factory()
    calls: list[float] = []

    @app.task(max_retries=3, retry_backoff=0.1)
    def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError(f"attempt {len(calls)} failed")
        return "ok"

    handle = await flaky.adelay()

    stats = await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.SUCCEEDED
    assert info.result == "ok"
    assert info.attempts == 3
    assert stats.retried == 2
    # Backoff 0.1 s then 0.2 s: each retry waited at least its delay.
    assert calls[1] - calls[0] >= 0.09
    assert calls[2] - calls[1] >= 0.19


async def test_retry_countdown_overrides_the_backoff(app_factory: AppFactory) -> None:
    app = app_factory()
    attempts: list[int] = []

    # A one-hour backoff: only the countdown can bring the job back within the burst.
    @app.task(max_retries=2, retry_backoff=3600)
    async def poll() -> int:
        attempts.append(current_job().attempt)
        if len(attempts) == 1:
            raise Retry(countdown_s=0.1, reason="not yet")
        return len(attempts)

    handle = await poll.adelay()

    await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.SUCCEEDED
    assert attempts == [1, 2]
    assert info.attempts == 2


async def test_retry_beyond_max_retries_is_dead(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(max_retries=1)
    async def always_retry() -> None:
        raise Retry(countdown_s=0.01, reason="again")

    handle = await always_retry.adelay()

    await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.attempts == 2
    assert info.error_type == "Retry"


# ------------------------------------------------------------------ timeouts


async def test_async_task_is_cancelled_at_its_timeout(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(timeout=0.2, max_retries=0)
    async def hang() -> None:
        await anyio.sleep(30)

    handle = await hang.adelay()
    started = time.monotonic()

    await drain(app)

    info = await handle.ainfo()
    assert time.monotonic() - started < 5
    assert info.status is JobStatus.DEAD
    assert info.error_type == "JobTimeoutError"
    assert "0.2" in (info.error or "")


async def test_sync_task_really_stops_at_its_timeout(app_factory: AppFactory) -> None:
    app = app_factory()
    side_effects: list[str] = []
    seen: dict[str, str] = {}
    thread_done = threading.Event()

    @app.task(timeout=0.3, max_retries=0)
    def spin() -> None:
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                time.sleep(0.005)
            side_effects.append("wrote after its timeout")
        except BaseException as exc:
            seen["exc"] = type(exc).__name__
            raise
        finally:
            thread_done.set()

    handle = await spin.adelay()

    await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.error_type == "JobTimeoutError"
    # The thread must stop now, long before its 3 s loop would end.
    assert await anyio.to_thread.run_sync(thread_done.wait, 2.0)
    assert side_effects == []
    assert seen["exc"] == "JobInterrupted"


async def test_sync_task_that_catches_exception_still_stops_at_its_timeout(
    app_factory: AppFactory,
) -> None:
    # The interrupt is a BaseException: a broad ``except Exception`` cannot keep the task going
    # after the worker has recorded its timeout.
    app = app_factory()
    side_effects: list[str] = []
    thread_done = threading.Event()

    @app.task(timeout=0.3, max_retries=0)
    def stubborn() -> None:
        try:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                try:
                    time.sleep(0.005)
                except Exception:
                    side_effects.append("swallowed the interrupt")
            side_effects.append("wrote after its timeout")
        finally:
            thread_done.set()

    handle = await stubborn.adelay()
    await drain(app)

    assert (await handle.ainfo()).error_type == "JobTimeoutError"
    assert await anyio.to_thread.run_sync(thread_done.wait, 2.0)
    assert side_effects == []


# ------------------------------------------------------------------ dead letters


async def test_exhausted_job_is_dead_lettered_with_type_message_traceback(
    app_factory: AppFactory,
) -> None:
    app = app_factory()

    @app.task(max_retries=1, retry_backoff=0.01)
    def explode(n: int) -> None:
        raise ValueError(f"bad input {n}")

    handle = await explode.adelay(42)

    stats = await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.attempts == 2
    assert info.error_type == "ValueError"
    assert info.error == "bad input 42"
    assert "ValueError: bad input 42" in (info.traceback or "")
    assert "explode" in (info.traceback or "")
    assert stats.dead == 1 and stats.retried == 1
    dead_key = QueueKeys(app.settings.prefix, "default").dead
    assert raw_redis(app).zrange(dead_key, 0, -1) == [handle.id]
    with pytest.raises(JobFailedError) as failed:
        await handle.aresult(timeout=1)
    assert (failed.value.error_type, failed.value.message) == ("ValueError", "bad input 42")
    assert failed.value.status == "dead"


async def test_unknown_task_is_dead_lettered_and_the_worker_goes_on(
    app_factory: AppFactory,
) -> None:
    app = app_factory()

    @app.task
    def known() -> str:
        return "ran"

    stray, good = await app.aenqueue_many([app.call("nobody.registered", 1), known.s()])

    stats = await drain(app)

    info = await stray.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.error_type == "UnknownTaskError"
    assert "unknown task" in (info.error or "")
    assert "nobody.registered" in (info.error or "")
    assert await good.aresult(timeout=1) == "ran"
    assert stats.succeeded == 1 and stats.dead == 1


async def test_undecodable_envelope_is_dead_lettered_as_poison(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def fine(n: int) -> int:
        return n

    damaged, good = await fine.adelay(1), await fine.adelay(2)
    job_key = QueueKeys(app.settings.prefix, "default").job(damaged.id)
    raw_redis(app).hset(job_key, "k", '{"id": "x", "task": ')

    await drain(app)

    info = await damaged.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.error_type == "PoisonJob"
    assert "poison" in (info.error or "")
    assert await good.aresult(timeout=1) == 2


async def test_a_burst_worker_does_not_end_when_a_fetch_popped_only_ids_it_buried(
    app_factory: AppFactory,
) -> None:
    # A fetch of 2 pops two ids without records: it buries both and leases nothing. The real
    # jobs queued behind them must still run before the burst worker ends.
    app = app_factory()

    @app.task
    def fine(n: int) -> int:
        return n

    keys = QueueKeys(app.settings.prefix, "default")
    raw_redis(app).rpush(keys.ready(JobPriority.NORMAL), "ghost-1", "ghost-2", "ghost-3", "ghost-4")
    handles = [await fine.adelay(n) for n in range(3)]

    stats = await drain(app, concurrency=2)

    assert [await h.aresult(timeout=1) for h in handles] == [0, 1, 2]
    assert stats.succeeded == 3
    dead = raw_redis(app).zrange(keys.dead, 0, -1)
    assert sorted(dead) == ["ghost-1", "ghost-2", "ghost-3", "ghost-4"]


async def test_unserialisable_result_is_dead_not_a_crash(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(max_retries=0)
    def odd() -> object:
        return object()

    handle = await odd.adelay()

    await drain(app)

    info = await handle.ainfo()
    assert info.status is JobStatus.DEAD
    assert info.error_type == "SerializationError"


async def test_sys_exit_in_a_task_fails_the_job_not_the_worker(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(max_retries=0)
    def quits() -> None:
        sys.exit(3)

    @app.task(max_retries=0)
    async def aquits() -> None:
        raise SystemExit(4)

    @app.task
    def after() -> str:
        return "still here"

    bad, abad, good = await app.aenqueue_many([quits.s(), aquits.s(), after.s()])

    await drain(app)

    for handle in (bad, abad):
        info = await handle.ainfo()
        assert info.status is JobStatus.DEAD
        assert info.error_type == "SystemExit"
    assert await good.aresult(timeout=1) == "still here"


# ------------------------------------------------------------------ events


async def test_status_events_reach_a_subscriber_in_order(app_factory: AppFactory) -> None:
    app = app_factory()
    tries: list[int] = []

    @app.task(name="ev.flaky", max_retries=2)
    async def flaky() -> None:
        tries.append(1)
        if len(tries) == 1:
            raise Retry(countdown_s=0.05, reason="once more")

    @app.task(name="ev.broken", max_retries=0)
    def broken() -> None:
        raise KeyError("gone")

    listener = AsyncBroker(app.settings)
    subscribed = anyio.Event()
    events: dict[str, list[dict[str, Any]]] = {}
    finals = 0

    async def listen() -> None:
        nonlocal finals
        async for _, data in listener.subscribe(app.settings.events_channel, ready=subscribed):
            event = json.loads(data)
            events.setdefault(event["job_id"], []).append(event)
            finals += event["status"] in ("succeeded", "dead")
            if finals == 2:
                return

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            await subscribed.wait()
            a, b = await flaky.adelay(), await broken.adelay()
            await drain(app)
    await listener.aclose()

    flow = [(e["status"], e["attempt"]) for e in events[a.id]]
    assert flow == [
        ("queued", 1), ("active", 1), ("retrying", 1), ("queued", 2), ("active", 2),
        ("succeeded", 2),
    ]  # fmt: skip
    assert [e["status"] for e in events[b.id]] == ["queued", "active", "dead"]
    dead_event = events[b.id][-1]
    assert dead_event["error"].startswith("KeyError")
    assert dead_event["task"] == "ev.broken"
    assert dead_event["queue"] == "default"
    assert "error" in events[a.id][2]
    assert {"job_id", "task", "queue", "status", "attempt", "timestamp"} <= set(events[a.id][0])


# ------------------------------------------------------------------ results


async def test_result_and_aresult_wait_for_the_worker(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def slow_add(a: int, b: int) -> int:
        await anyio.sleep(0.2)
        return a + b

    first, second = await slow_add.adelay(2, 3), await slow_add.adelay(40, 2)
    got: dict[str, Any] = {}

    async def wait_async() -> None:
        got["async"] = await first.aresult(timeout=10)

    def wait_sync() -> None:
        got["sync"] = second.result(timeout=10)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_async)
            tg.start_soon(anyio.to_thread.run_sync, wait_sync)
            await anyio.sleep(0)  # let both waiters block before any job runs
            tg.start_soon(drain, app)

    assert got == {"async": 5, "sync": 42}


async def test_result_of_a_job_nobody_runs_times_out(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def never_run() -> None: ...

    handle = await never_run.adelay()
    started = time.monotonic()

    with pytest.raises(ResultTimeoutError):
        await anyio.to_thread.run_sync(lambda: handle.result(timeout=0.3))
    with pytest.raises(ResultTimeoutError):
        await handle.aresult(timeout=0.3)

    assert 0.5 <= time.monotonic() - started < 3
    assert await handle.astatus() is JobStatus.QUEUED


async def test_result_of_an_unknown_job_is_not_found(app_factory: AppFactory) -> None:
    app = app_factory()

    with pytest.raises(JobNotFoundError):
        await app.handle("no-such-job").aresult(timeout=1)


async def test_current_job_tells_the_task_who_it_is(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task(name="who.am.i")
    async def whoami() -> dict[str, Any]:
        ctx = current_job()
        return {"id": ctx.job.id, "task": ctx.job.task, "attempt": ctx.attempt}

    handle = await whoami.adelay()

    await drain(app)

    assert await handle.aresult(timeout=1) == {"id": handle.id, "task": "who.am.i", "attempt": 1}


async def test_cancelling_a_running_job_stops_it(app_factory: AppFactory) -> None:
    app = app_factory()
    started = anyio.Event()

    @app.task
    async def long_job() -> None:
        started.set()
        await anyio.sleep(30)

    handle = await long_job.adelay()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, app)
            await started.wait()
            await handle.acancel()

    info = await handle.ainfo()
    assert info.status is JobStatus.CANCELLED
    with pytest.raises(JobFailedError):
        await handle.aresult(timeout=1)


# ------------------------------------------------------------------ leases, idling, stopping


async def test_a_job_longer_than_its_lease_is_renewed_not_run_twice(
    app_factory: AppFactory,
) -> None:
    app = app_factory(lease_s=1.0)
    runs: list[int] = []

    @app.task
    async def long_async() -> None:
        runs.append(1)
        await anyio.sleep(1.8)

    @app.task
    def long_sync() -> None:
        runs.append(2)
        end = time.monotonic() + 1.8
        while time.monotonic() < end:  # holds the GIL most of the time
            pass

    a, b = await long_async.adelay(), await long_sync.adelay()

    await drain(app, concurrency=4)

    assert sorted(runs) == [1, 2]
    for handle in (a, b):
        info = await handle.ainfo()
        assert info.status is JobStatus.SUCCEEDED
        assert info.deliveries == 1


async def test_idle_worker_wakes_on_enqueue_without_polling(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    async def ping() -> str:
        return "pong"

    worker = Worker(app.settings, app.registry, concurrency=1, block_s=5.0)
    client = raw_redis(app)

    def script_calls() -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # Measure a quiet window: an idle worker blocks on the wake marker, it does not fetch.
            await anyio.sleep(0.3)
            before = script_calls()
            await anyio.sleep(0.6)
            idle_calls = script_calls() - before
            started = time.monotonic()
            handle = await ping.adelay()
            assert await handle.aresult(timeout=4) == "pong"
            latency_s = time.monotonic() - started
            worker.stop()

    assert idle_calls <= 1, idle_calls
    assert latency_s < 1.0  # far below block_s: the enqueue woke it


async def test_stop_lets_a_running_job_finish_within_the_grace(app_factory: AppFactory) -> None:
    app = app_factory()
    started = anyio.Event()

    @app.task
    async def short() -> str:
        started.set()
        await anyio.sleep(0.3)
        return "done"

    handle = await short.adelay()
    worker = Worker(app.settings, app.registry, concurrency=1, grace_s=5.0, block_s=0.5)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            worker.stop()

    info = await handle.ainfo()
    assert info.status is JobStatus.SUCCEEDED
    assert info.result == "done"


async def test_stop_hands_back_a_job_that_outlives_the_grace(app_factory: AppFactory) -> None:
    app = app_factory()
    started = anyio.Event()

    @app.task
    async def endless() -> None:
        started.set()
        await anyio.sleep(60)

    handle = await endless.adelay()
    worker = Worker(app.settings, app.registry, concurrency=1, grace_s=0.2, block_s=0.5)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await started.wait()
            worker.stop()

    info = await handle.ainfo()
    assert info.status is JobStatus.QUEUED
    assert info.attempts == 0
    assert worker.stats.handed_back == 1


async def test_drain_costs_at_most_eight_redis_commands_per_job(app_factory: AppFactory) -> None:
    """Counted inside Lua, as INFO commandstats does: the budget the fetch/finish scripts keep.

    Per job: fetch's HMGET + HSET + PUBLISH, finish's HMGET + HSET + EXPIRE + PUBLISH; the
    inflight ZADD/ZREM, the list pop and the housekeeping are one call per batch.
    """
    app = app_factory()

    @app.task
    async def noop(i: int) -> None:
        return None

    n = 400
    await app.aenqueue_many([noop.s(i) for i in range(n)])
    client = raw_redis(app)

    def calls() -> dict[str, int]:
        stats = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    before = calls()
    stats = await drain(app, concurrency=50)
    after = calls()
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    delta.pop("info", None)

    assert stats.succeeded == n
    per_job = sum(delta.values()) / n
    assert per_job <= 8, delta
    # The per-job shape: two events, two record reads, two record writes, one EXPIRE.
    # (A little slack: the server is the test session's, and its clients may still be talking.)
    assert 2 * n <= delta["publish"] <= 2 * n + 10
    assert delta["hmget"] <= 2 * n + 10


async def wait_idle(worker: Worker, queues: set[str], limit_s: float = 5) -> None:
    """Poll (bounded) until ``worker`` is blocked on the wake marker of each of ``queues``."""
    with anyio.fail_after(limit_s):
        while worker.idle_queues != queues:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("how", ["stop", "cancel"])
async def test_stopping_or_cancelling_an_idle_worker_ends_it_at_once(
    app_factory: AppFactory, how: str
) -> None:
    # The idle fetch is shielded (its reply holds leases), so only the worker's own stop marker
    # can end it early: without it, run() would return after block_s = 30 s.
    app = app_factory()
    worker = Worker(app.settings, app.registry, concurrency=2, block_s=30)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_idle(worker, {"default"})
            started = time.monotonic()
            if how == "stop":
                worker.stop()
            else:
                tg.cancel_scope.cancel()
    assert time.monotonic() - started < 5


async def test_idle_fetches_of_two_queues_never_exceed_the_concurrency(
    app_factory: AppFactory,
) -> None:
    # Both queues' idle fetches block at once with one free slot between them: they only wait,
    # and the fetch loop leases what it reserved, so neither job is leased (shown active) and
    # handed back: one delivery each, never two running.
    app = app_factory()
    running, peak = 0, 0

    @app.task
    async def hold(label: str) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.3)
        running -= 1
        return label

    worker = Worker(app.settings, app.registry, queues=["qa", "qb"], concurrency=1, block_s=5)
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_idle(worker, {"qa", "qb"})
            a = await hold.options(queue="qa").adelay("a")
            b = await hold.options(queue="qb").adelay("b")
            assert await a.aresult(timeout=10) == "a"
            assert await b.aresult(timeout=10) == "b"
            worker.stop()

    assert peak == 1
    infos = [await a.ainfo(), await b.ainfo()]
    assert sorted(i.deliveries for i in infos) == [1, 1]
