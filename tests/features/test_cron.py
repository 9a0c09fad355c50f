"""Cron: expressions, catch-up policies, atomic tick claims, three real workers once per tick."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
import redis

from taskforge import ConfigurationError, EnqueueError, JobStatus, Taskforge, Worker
from taskforge.client import Client
from taskforge.cron import CatchUp, CronSchedule, due_ticks
from taskforge.cron.runner import Scheduler
from taskforge.protocol.brokers import AsyncBroker
from tests.support.timetasks import QUIET, key, wait_until

AppFactory = Callable[..., Taskforge]
MINUTE_MS = 60_000
#: 2030-01-01 00:00:00 UTC, a minute boundary.
T0 = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ------------------------------------------------------------------ pure schedule logic


def test_next_after_follows_the_expression_and_the_seconds_field() -> None:
    every_5_min = CronSchedule("*/5 * * * *")
    every_10_s = CronSchedule("* * * * * */10")

    assert every_5_min.next_after(T0) == T0 + 5 * MINUTE_MS
    assert every_5_min.next_after(T0 - 1) == T0
    assert every_10_s.next_after(T0 + 1) == T0 + 10_000


def test_time_zone_moves_wall_clock_ticks() -> None:
    nine_utc = CronSchedule("0 9 * * *")
    nine_paris = CronSchedule("0 9 * * *", timezone="Europe/Paris")

    # Paris is UTC+1 in January: 09:00 there is 08:00 UTC.
    assert nine_utc.next_after(T0) - nine_paris.next_after(T0) == 60 * MINUTE_MS


def test_bad_expression_or_zone_is_refused_at_registration(app_factory: AppFactory) -> None:
    app = app_factory()

    with pytest.raises(ConfigurationError, match="cron expression"):

        @app.task(cron="every minute")
        def a() -> None: ...

    with pytest.raises(ConfigurationError, match="time zone"):

        @app.task(cron="* * * * *", timezone="Mars/Olympus")
        def b() -> None: ...

    with pytest.raises(ConfigurationError, match="catch_up"):

        @app.task(cron="* * * * *", catch_up="sometimes")
        def c() -> None: ...


def test_periodic_checks_its_arguments_against_the_task(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def report(kind: str) -> None: ...

    entry = app.periodic(report, cron="0 * * * *", args=["daily"], name="report-daily")

    assert entry.call.args == ("daily",)
    assert entry.job_id(T0) == f"cron:report-daily:{T0}"
    with pytest.raises(EnqueueError):
        app.periodic(report, cron="0 * * * *", name="report-bad")
    with pytest.raises(ConfigurationError, match="taken"):
        app.periodic(report, cron="5 * * * *", args=["weekly"], name="report-daily")


def test_catch_up_all_after_a_long_outage_is_bounded_and_quick() -> None:
    every_second = CronSchedule("* * * * * *")
    day_ms = 24 * 60 * MINUTE_MS

    ticks, marker = due_ticks(every_second, T0, T0 + day_ms, CatchUp.ALL)

    assert len(ticks) == 1000
    assert ticks[-1] == marker == T0 + day_ms
    assert ticks == list(range(T0 + day_ms - 999_000, T0 + day_ms + 1, 1000))


def test_first_sight_starts_with_the_next_tick() -> None:
    ticks, marker = due_ticks(CronSchedule("* * * * *"), None, T0 + 30_000, CatchUp.ALL)

    assert ticks == []
    assert marker == T0 + 30_000


@pytest.mark.parametrize(
    ("policy", "late_ms", "expected"),
    [
        (CatchUp.ALL, 10_000, [1, 2, 3, 4, 5]),
        (CatchUp.ONCE, 10_000, [5]),
        (CatchUp.SKIP, 10_000, [5]),  # the latest tick is on time: it runs
        (CatchUp.ONCE, 90_000, [5]),
        (CatchUp.SKIP, 90_000, []),  # the latest tick is 90 s late: missed, dropped
    ],
)
def test_catch_up_policy_decides_which_missed_ticks_run(
    policy: CatchUp, late_ms: int, expected: list[int]
) -> None:
    now = T0 + 25 * MINUTE_MS + late_ms

    ticks, marker = due_ticks(CronSchedule("*/5 * * * *"), T0, now, policy)

    assert ticks == [T0 + n * 5 * MINUTE_MS for n in expected]
    assert marker == T0 + 25 * MINUTE_MS


# ------------------------------------------------------------------ claims against real Redis


def _scheduler(app: Taskforge, broker: AsyncBroker, now_ms: list[int]) -> Scheduler:
    async def clock() -> int:
        return now_ms[0]

    return Scheduler(
        broker, app.registry.periodics(), encode=Client(app.settings).encode, clock=clock
    )


def _cron_app(app_factory: AppFactory, policy: str) -> Taskforge:
    app = app_factory()

    @app.task(name="job.every_5_min", cron="*/5 * * * *", catch_up=policy)
    def every_5_min() -> None: ...

    return app


@pytest.mark.anyio
@pytest.mark.parametrize(("policy", "runs"), [("all", 5), ("once", 1), ("skip", 0)])
async def test_a_late_worker_applies_the_catch_up_policy(
    app_factory: AppFactory, policy: str, runs: int
) -> None:
    app = _cron_app(app_factory, policy)
    broker = AsyncBroker(app.settings)
    now = [T0]
    await _scheduler(app, broker, now).run_once()  # first sight: marker = T0, nothing runs
    now[0] = T0 + 25 * MINUTE_MS + 90_000  # the cluster was down for five ticks

    enqueued = await _scheduler(app, broker, now).run_once()

    ids = [f"cron:job.every_5_min:{T0 + n * 5 * MINUTE_MS}" for n in range(1, 6)]
    records = await broker.run(broker.ops.records("default", ids))
    present = [r.id for r in records if r is not None]
    assert enqueued == runs
    assert present == ids[len(ids) - runs :]
    assert all(r.status is JobStatus.QUEUED for r in records if r is not None)
    await broker.aclose()


@pytest.mark.anyio
async def test_racing_schedulers_enqueue_each_tick_exactly_once(app_factory: AppFactory) -> None:
    app = _cron_app(app_factory, "all")
    brokers = [AsyncBroker(app.settings) for _ in range(8)]
    now = [T0]
    schedulers = [_scheduler(app, b, now) for b in brokers]
    await schedulers[0].run_once()
    totals: list[int] = []

    async def one_pass(s: Scheduler) -> None:
        totals.append(await s.run_once())

    for n in range(1, 11):
        now[0] = T0 + n * 5 * MINUTE_MS
        async with anyio.create_task_group() as tg:
            for s in schedulers:
                tg.start_soon(one_pass, s)

    counts = await brokers[0].run(brokers[0].ops.counts("default"))
    assert sum(totals) == 10
    assert counts.ready_total == 10
    for b in brokers:
        await b.aclose()


# ------------------------------------------------------------------ real worker processes


def test_three_workers_run_each_per_second_tick_exactly_once(
    worker_process: Callable[..., subprocess.Popen[bytes]], prefix: str, redis_url: str
) -> None:
    procs = [worker_process(*QUIET, "-Q", "cron") for _ in range(3)]
    r = redis.Redis.from_url(redis_url, decode_responses=True)

    wait_until(lambda: r.llen(key("ticks", prefix)) >= 4, timeout_s=20)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(15)

    ids = r.lrange(key("ticks", prefix), 0, -1)
    ticks = sorted(int(i.rsplit(":", 1)[1]) for i in ids)
    assert len(ids) == len(set(ids)), f"a tick ran twice: {sorted(ids)}"
    assert ticks == list(range(ticks[0], ticks[-1] + 1000, 1000)), "a tick was skipped"


def test_cron_command_lists_periodic_tasks_with_next_fire_times(
    redis_url: str, prefix: str
) -> None:
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}

    out = subprocess.run(
        [sys.executable, "-m", "taskforge.cli", "cron", "tests.support.timetasks:app"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert out.returncode == 0, out.stderr
    assert "cron.tick" in out.stdout
    assert "* * * * * *" in out.stdout


def test_scheduling_example_runs_against_real_redis(redis_url: str, prefix: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix}

    out = subprocess.run(
        [sys.executable, "examples/scheduling.py"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert out.returncode == 0, out.stderr
    for line in (
        "cancel a scheduled job: cancelled",
        "duplicate created=False",
        "progress 100%",
        "remote error: ValueError: the input file is empty",
        "the running job ended cancelled",
        "cron tick -> job cron:demo.heartbeat:",
    ):
        assert line in out.stdout, out.stdout


@pytest.mark.anyio
async def test_burst_worker_claims_due_ticks_of_its_queues_only(app_factory: AppFactory) -> None:
    app = app_factory()
    ran: list[str] = []

    @app.task(name="job.mine", cron="* * * * * *", catch_up="once")
    def mine() -> None:
        ran.append("mine")

    @app.task(name="job.other", queue="other", cron="* * * * * *")
    def other() -> None:
        ran.append("other")

    broker = AsyncBroker(app.settings)
    now_ms = await broker.run(broker.ops.server_time_ms())
    marker = broker.ops.keys("default").cron("job.mine")
    redis.Redis.from_url(app.settings.redis_url).set(marker, now_ms - 10_000)  # ten missed ticks

    worker = Worker(app.settings, app.registry, queues=["default"], burst=True, block_s=0.5)
    with anyio.fail_after(10):
        await worker.run()

    others = await broker.run(broker.ops.cron_markers("other", ["job.other"]))
    assert ran == ["mine"]  # catch_up="once": one job for ten missed ticks
    assert others == {"job.other": None}  # no worker serves "other": never scheduled
    await broker.aclose()
