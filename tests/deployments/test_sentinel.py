"""taskforge behind Redis Sentinel: connection, durable enqueue (WAIT), and a real failover.

Each test gets its own deployment (a primary, a replica, three Sentinels on free ports), since a
failover test destroys its primary. The failover tests print what was lost or duplicated; run
them with ``pytest -s tests/deployments/test_sentinel.py`` to see the figures.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import anyio
import pytest

from taskforge import (
    BrokerError,
    Call,
    JobNotFoundError,
    JobStatus,
    Settings,
    Taskforge,
    Worker,
    current_job,
)
from taskforge.driver.connection import sync_client, topology
from taskforge.errors import ConfigurationError, NotReplicatedError
from taskforge.protocol.keys import QueueKeys
from tests.support.cluster import LocalSentinel

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    """A fresh primary + replica + 3 Sentinels."""
    try:
        deployment = LocalSentinel().start()
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.skip(f"cannot start a local Sentinel deployment: {exc}")
    yield deployment
    deployment.cleanup()


@pytest.fixture
def sentinel_settings(sentinel: LocalSentinel, prefix: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"redis_url": sentinel.url, "prefix": prefix}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


# ------------------------------------------------------------------ connection


def test_sentinel_urls_name_the_sentinels_the_service_and_the_db() -> None:
    topo = topology(Settings(redis_url="rediss+sentinel://:pw@s1:26379,s2/mymaster/2"))

    assert topo.kind == "sentinel"
    assert topo.nodes == (("s1", 26379), ("s2", 26379))
    assert (topo.service, topo.db, topo.password, topo.tls) == ("mymaster", 2, "pw", True)
    with pytest.raises(ConfigurationError, match="name the monitored service"):
        topology(Settings(redis_url="redis+sentinel://s1:26379"))


async def test_producer_and_worker_reach_the_primary_through_the_sentinels(
    sentinel_settings: Callable[..., Settings],
) -> None:
    app = Taskforge(sentinel_settings())

    @app.task(name="s.add")
    async def add(a: int, b: int) -> int:
        return a + b

    handle = await add.adelay(2, 3)
    with anyio.fail_after(15):
        await Worker(app.settings, app.registry, burst=True).run()

    assert await handle.aresult(timeout=5) == 5


async def test_task_bodies_reach_the_primary_through_the_sentinels(
    sentinel_settings: Callable[..., Settings],
) -> None:
    app = Taskforge(sentinel_settings())
    key = f"{app.settings.prefix}:body"

    @app.task(name="s.body_async")
    async def body_async() -> None:
        await current_job().redis.incr(key)

    @app.task(name="s.body_sync")
    def body_sync() -> None:
        current_job().sync_redis.incr(key)

    await body_async.adelay()
    await body_sync.adelay()
    with anyio.fail_after(15):
        await Worker(app.settings, app.registry, burst=True).run()

    assert sync_client(app.settings).get(key) == "2"


def test_durable_enqueue_returns_once_the_replica_has_the_job(
    sentinel: LocalSentinel, sentinel_settings: Callable[..., Settings]
) -> None:
    app = Taskforge(sentinel_settings(durable_enqueue=True))
    assert sentinel.replica is not None

    handle = app.submit([app.call("d.x")])[0]

    # Read on the replica right away: WAIT returned, so it already has the record.
    job_key = QueueKeys(app.settings.prefix, "default").job(handle.id)
    assert sentinel.replica.client().hget(job_key, "s") == "q"  # queued
    app.client.close()


def test_resending_an_unreplicated_job_is_acknowledged_only_once_the_replica_has_it(
    sentinel: LocalSentinel, sentinel_settings: Callable[..., Settings]
) -> None:
    settings = sentinel_settings(durable_enqueue=True, durable_timeout_s=0.2)
    first, second = Taskforge(settings), Taskforge(settings)
    second.submit([_call(second, "warm-up")])  # its own connection, already used

    sentinel.pause_replica()
    try:
        with pytest.raises(NotReplicatedError):
            first.submit([_call(first, "job-1")])
        # The re-send writes no job (the id exists) and goes out on another connection: its
        # WAIT must still cover job-1, not only that connection's earlier writes.
        with pytest.raises(NotReplicatedError):
            second.submit([_call(second, "job-1")])
    finally:
        sentinel.resume_replica()
    handle = second.submit([_call(second, "job-1")])[0]

    assert not handle.created
    assert handle.status() is JobStatus.QUEUED
    first.client.close()
    second.client.close()


# ------------------------------------------------------------------ failover under load


@dataclass
class FailoverReport:
    """What one run under failover saw."""

    durable: bool
    sent: int = 0
    retried_sends: int = 0
    executed: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    failover_s: float = 0.0
    rejoin_s: float = 0.0
    outage_s: float = 0.0

    @property
    def duplicated(self) -> int:
        """Jobs that ran more than once (at-least-once delivery after a lost outcome)."""
        return sum(1 for n in self.executed.values() if n > 1)

    def line(self) -> str:
        mode = "WAIT 1 on enqueue" if self.durable else "no WAIT         "
        return (
            f"failover [{mode}]: {self.sent} jobs acknowledged, {len(self.lost)} lost, "
            f"{self.duplicated} ran twice; producer retried {self.retried_sends} sends; "
            f"promotion took {self.failover_s:.1f}s (old primary back as replica at"
            f" {self.rejoin_s:.1f}s), producer blocked {self.outage_s:.1f}s"
        )


async def run_failover(sentinel: LocalSentinel, settings: Settings, jobs: int) -> FailoverReport:
    """Produce ``jobs`` jobs at a steady pace while a worker runs them; kill the primary after
    a third of them. Every send carries its own job id, so a producer that got an error
    re-sends it safely (a duplicate id writes nothing)."""
    report = FailoverReport(durable=settings.durable_enqueue)
    app = Taskforge(settings)

    @app.task(name="fo.mark", max_retries=10, retry_backoff=0.1)
    async def mark(n: int) -> None:
        report.executed[f"fo-{n}"] += 1

    async def send(n: int) -> None:
        started = time.monotonic()
        while True:
            try:
                await mark.options(job_id=f"fo-{n}").adelay(n)
                break
            except BrokerError:
                report.retried_sends += 1
                await anyio.sleep(0.05)
        if time.monotonic() - started > 0.5:
            report.outage_s += time.monotonic() - started
        report.sent += 1

    async def kill_primary() -> None:
        old = await anyio.to_thread.run_sync(sentinel.kill_primary)
        started = time.monotonic()
        await anyio.to_thread.run_sync(sentinel.wait_failover, old)
        report.failover_s = time.monotonic() - started
        # As an operator would: bring the crashed node back; it rejoins as a replica, and
        # durable enqueues (WAIT 1) can be acknowledged again.
        await anyio.to_thread.run_sync(sentinel.rejoin_old_primary)
        report.rejoin_s = time.monotonic() - started

    worker = Worker(settings, app.registry, concurrency=20, block_s=0.5, grace_s=1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        for n in range(jobs):
            if n == jobs // 3:
                tg.start_soon(kill_primary)
            await send(n)
            await anyio.sleep(0.005)
        # Wait (bounded) until every acknowledged job ran; leases are short, so a job whose
        # outcome died with the primary comes back within a few seconds.
        with anyio.move_on_after(20):
            while len(report.executed) < jobs:
                await anyio.sleep(0.05)
        worker.stop()
    report.lost = [f"fo-{n}" for n in range(jobs) if f"fo-{n}" not in report.executed]
    app.client.close()
    return report


@pytest.mark.parametrize("durable", [False, True], ids=["async-replication", "durable-wait"])
async def test_worker_and_producer_keep_going_through_a_failover(
    sentinel: LocalSentinel,
    sentinel_settings: Callable[..., Settings],
    durable: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = sentinel_settings(durable_enqueue=durable, lease_s=2.0)

    report = await run_failover(sentinel, settings, jobs=400)

    with capsys.disabled():
        print("\n" + report.line())
    assert report.sent == 400
    assert report.failover_s > 0, "the primary was never replaced"
    if durable:
        # WAIT returned only once the replica had the job: the promoted replica has it all.
        assert report.lost == []
    # Whatever survived on the new primary ran, and its final state is recorded there. Without
    # WAIT a job can run on the old primary and still be missing from the promoted replica
    # (its enqueue never replicated): that is the documented cost of async replication.
    app = Taskforge(settings)
    statuses = []
    for job_id in list(report.executed)[-50:]:
        try:
            statuses.append(app.handle(job_id).status())
        except JobNotFoundError:
            assert not durable, f"{job_id} ran but the promoted replica has no record of it"
    assert statuses and set(statuses) == {JobStatus.SUCCEEDED}
    app.client.close()


# ------------------------------------------------------------------ a lagging replica


@pytest.mark.parametrize("durable", [False, True], ids=["async-replication", "durable-wait"])
def test_only_wait_keeps_acknowledged_jobs_when_the_replica_lagged_at_failover(
    sentinel: LocalSentinel,
    sentinel_settings: Callable[..., Settings],
    durable: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = sentinel_settings(durable_enqueue=durable, durable_timeout_s=0.2)
    app = Taskforge(settings)
    acked: list[str] = []
    pending: list[str] = []

    def send(job_id: str) -> None:
        try:
            app.submit([_call(app, job_id)])
            acked.append(job_id)
        except NotReplicatedError:
            pending.append(job_id)  # on the primary only: re-send it (same id) later

    for n in range(20):
        send(f"before-{n}")
    sentinel.pause_replica()
    _fill_replication_pipe(sentinel, app.settings.prefix)
    for n in range(10):
        send(f"lagging-{n}")
    old = sentinel.kill_primary()
    sentinel.resume_replica()
    sentinel.wait_failover(old)
    sentinel.rejoin_old_primary()
    for job_id in pending:
        _resend(app, job_id, acked)

    lost = [job_id for job_id in acked if not _exists(app, job_id)]
    with capsys.disabled():
        mode = "WAIT 1 on enqueue" if durable else "no WAIT         "
        print(
            f"\nlagging replica [{mode}]: {len(acked)} acknowledged, {len(lost)} lost, "
            f"{len(pending)} refused with NotReplicatedError and re-sent after the failover"
        )
    assert len(acked) == 30
    if durable:
        assert lost == []
        assert len(pending) == 10
    else:
        assert sorted(lost) == sorted(f"lagging-{n}" for n in range(10))
    app.client.close()


def _fill_replication_pipe(sentinel: LocalSentinel, prefix: str) -> None:
    # The stopped replica's socket buffers still take a few MB of the stream, which it would
    # apply on resume; push that much first so the jobs after it are really not on the replica.
    assert sentinel.primary is not None
    client = sentinel.primary.client()
    for i in range(4):
        client.set(f"{prefix}:filler:{i}", "x" * (8 << 20))
    client.close()


def _call(app: Taskforge, job_id: str) -> Call:
    call = app.call("lag.x")
    return replace(call, options=replace(call.options, job_id=job_id))


def _resend(app: Taskforge, job_id: str, acked: list[str]) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            app.submit([_call(app, job_id)])
            acked.append(job_id)
            return
        except BrokerError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _exists(app: Taskforge, job_id: str) -> bool:
    try:
        app.handle(job_id).status()
    except JobNotFoundError:
        return False
    return True
