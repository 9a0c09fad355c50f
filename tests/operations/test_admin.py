"""The operator API (taskforge.admin) and its CLI faces, against a real Redis (and memory://)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
from redis.cluster import key_slot
from typer.testing import CliRunner, Result

from taskforge import Admin, DeadFilter, JobNotFoundError, JobStatus, Settings, Taskforge, Worker
from taskforge.cli import cli
from taskforge.deadletters import DeadOps, DeadSelection
from taskforge.driver.requests import ScriptCall
from taskforge.health import HEALTH_KEYS
from taskforge.protocol.inspection import InspectOps
from taskforge.protocol.ops import Ops
from taskforge.pubsub import RedisClient

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def add(a: int, b: int = 0) -> int:
    """Adds."""
    return a + b


def boom(where: str = "here") -> None:
    """Always fails."""
    raise ValueError(f"boom {where}")


def register(app: Taskforge) -> Taskforge:
    app.task(name="adm.add")(add)
    app.task(name="adm.boom", max_retries=0)(boom)
    return app


@pytest.fixture
def admin(settings_factory: Callable[..., Settings]) -> Iterator[Admin]:
    with Admin(settings_factory()) as a:
        yield a


@pytest.fixture
def run(redis_url: str, prefix: str) -> Callable[..., Result]:
    env = {"REDIS_URL": redis_url, "TASKFORGE_PREFIX": prefix, "COLUMNS": "220"}

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, input=input, catch_exceptions=False)

    return invoke


def burst(app: Taskforge, *queues: str) -> None:
    w = Worker(app.settings, app.registry, queues=list(queues), burst=True, block_s=0.2)
    anyio.run(w.run)


# --------------------------------------------------------------------------- jobs by id


def test_a_job_is_found_by_id_alone_in_any_queue(any_url: str, prefix: str) -> None:
    app = register(Taskforge(Settings(redis_url=any_url, prefix=prefix)))
    adder = app.registry.get("adm.add")
    first = adder.options(queue="billing").delay(1, 2)
    app.submit([adder.options(queue="emails").s(3)])

    handle = app.handle(first.id)

    assert (handle.queue, handle.status()) == ("billing", JobStatus.QUEUED)
    assert Admin(app.settings).job(first.id)[0] == "billing"
    with pytest.raises(JobNotFoundError, match="in any queue"):
        app.handle("no-such-job")
    app.client.close()


@pytest.mark.anyio
async def test_ahandle_finds_the_queue_without_blocking_the_loop(app_factory: AppFactory) -> None:
    app = register(app_factory())
    job = app.registry.get("adm.add").options(queue="reports").delay(1)

    handle = await app.ahandle(job.id)

    assert handle.queue == "reports" and await handle.astatus() is JobStatus.QUEUED


def test_job_show_and_cancel_by_id_from_the_cli(
    app_factory: AppFactory, run: Callable[..., Result]
) -> None:
    app = register(app_factory())
    job = app.registry.get("adm.add").options(queue="later").delay(1)

    shown = json.loads(run("job", job.id, "--json").stdout)
    cancelled = run("job", "cancel", job.id)
    again = json.loads(run("job", "show", job.id, "--json").stdout)
    missing = run("job", "cancel", "nope")

    assert (shown["queue"], shown["status"]) == ("later", "queued")
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.stdout
    assert again["status"] == "cancelled"
    assert missing.exit_code == 1 and "no job 'nope'" in missing.stderr


# --------------------------------------------------------------------------- queue listing


def test_queue_listing_pages_ready_per_priority_then_scheduled_in_run_order(
    app_factory: AppFactory, admin: Admin, run: Callable[..., Result]
) -> None:
    app = register(app_factory())
    adder = app.registry.get("adm.add")
    normal = [adder.delay(i).id for i in range(5)]
    high = adder.options(priority="high").delay(99).id
    later = [adder.schedule(300 + i, i).id for i in range(3)]

    page1 = admin.listing("default", offset=0, limit=2)
    shown = run("queues", "show", "default", "--json", "--limit", "2", "--offset", "2")
    page2 = json.loads(shown.stdout)
    text = run("queues", "show", "default", "--limit", "2").stdout

    assert [j.id for j in page1.sections["high"]] == [high]
    assert [j.id for j in page1.sections["normal"]] == normal[:2]
    assert [j.id for j in page1.sections["scheduled"]] == later[:2]
    assert [j["id"] for j in page2["sections"]["normal"]] == normal[2:4]
    assert page1.depth.ready == {"high": 1, "normal": 5, "low": 0}
    assert page1.sections["normal"][0].task == "adm.add"
    assert "--offset 2" in text and normal[0] in text


# --------------------------------------------------------------------------- queue purge


def test_purge_asks_first_then_empties_ready_and_scheduled_but_keeps_dead(
    app_factory: AppFactory, admin: Admin, run: Callable[..., Result]
) -> None:
    app = register(app_factory())
    app.registry.get("adm.boom").delay()
    burst(app, "default")  # one dead letter
    adder = app.registry.get("adm.add")
    ids = [adder.delay(i).id for i in range(4)] + [adder.schedule(600, 1).id]

    refused = run("queues", "purge", "default", input="n\n")
    kept = admin.depths(["default"])[0]
    accepted = run("queues", "purge", "default", input="y\n")
    (after,) = admin.depths(["default"])

    assert refused.exit_code == 1 and "aborted" in refused.stderr
    assert (kept.ready_total, kept.scheduled) == (4, 1)
    assert accepted.exit_code == 0 and "purged 5 job(s)" in accepted.stdout
    assert (after.ready_total, after.scheduled, after.dead) == (0, 0, 1)
    assert all(admin.find(i) is None for i in ids)


def test_purge_of_a_big_queue_deletes_every_record_in_bounded_batches(
    app_factory: AppFactory, admin: Admin
) -> None:
    app = register(app_factory())
    adder = app.registry.get("adm.add")
    handles = app.enqueue_many([adder.s(i) for i in range(250)])
    inspect = InspectOps(admin.broker.ops)

    purged = admin.broker.run(inspect.purge("default", batch=60))
    left = admin.broker.run(inspect.drain_purged("default", batch=60))

    assert purged.total == 250 and purged.records_deleted == 250
    assert left == 0  # nothing left for a later drain
    assert admin.find(handles[-1].id) is None
    assert admin.depths(["default"])[0].ready_total == 0


def test_purge_with_yes_on_an_empty_queue_purges_nothing(run: Callable[..., Result]) -> None:
    result = run("queues", "purge", "empty", "--yes", "--json")

    assert json.loads(result.stdout)["purged"] == 0


# --------------------------------------------------------------------------- dead letters


def test_dead_purge_never_deletes_a_job_requeued_after_it_was_selected(
    app_factory: AppFactory, admin: Admin
) -> None:
    app = register(app_factory())
    dead = [app.registry.get("adm.boom").delay(str(i)).id for i in range(3)]
    burst(app, "default")
    selection = admin.dead_select(every=True)

    admin.dead_requeue(ids=[dead[0]])  # a concurrent revive, between selection and purge
    result = admin.dead_purge(selection)

    assert selection.count == 3 and result.total == 2 and result.skipped == 1
    assert admin.job(dead[0])[1].status is JobStatus.QUEUED
    assert admin.find(dead[1]) is None


def test_dead_filters_select_by_task_error_and_age(app_factory: AppFactory, admin: Admin) -> None:
    app = register(app_factory())
    boomed = [app.registry.get("adm.boom").delay(w).id for w in ("disk", "net")]
    burst(app, "default")

    by_error = admin.dead_list(flt=DeadFilter.parse(error="BOOM NET"))
    by_task = admin.dead_list(flt=DeadFilter.parse(task="adm.*", newer_than="1h"))
    too_old = admin.dead_list(flt=DeadFilter.parse(older_than="1h"))

    assert [d.id for d in by_error] == [boomed[1]]
    assert by_error[0].reason == "ValueError: boom net"
    assert sorted(d.id for d in by_task) == sorted(boomed)
    assert too_old == []


def test_every_admin_script_touches_one_hash_slot() -> None:
    ops = Ops(Settings(prefix="tf"))
    inspect, dead = InspectOps(ops), DeadOps(ops)
    series = inspect.series(["orders"], minutes=5)
    next(series)  # TIME
    totals = series.send([1_700_000_000, 0])  # the all-queues counters: one key of their own
    calls = [
        inspect.purge("orders"),
        inspect.drain_purged("orders"),
        dead.apply("purge", DeadSelection({"orders": ["j1"]}, [])),
    ]

    requests = [next(op) for op in calls] + [series.send([0] * 5 * 4)]
    for request in requests:
        assert isinstance(request, ScriptCall)
        assert {key_slot(k.encode()) for k in request.keys} == {key_slot(b"{orders}")}
    assert isinstance(totals, ScriptCall) and len(totals.keys) == 1


# --------------------------------------------------------------------------- workers, health


def test_a_worker_that_stopped_beating_is_listed_as_lost(
    admin: Admin, run: Callable[..., Result], settings_factory: Callable[..., Settings]
) -> None:
    ops = admin.broker.ops
    now = time.time()
    for name in ("w-live", "w-gone"):
        admin.broker.run(ops.heartbeat(name, {"id": name, "pid": 1, "last_seen": now}, 60))
    client = redis.Redis.from_url(settings_factory().redis_url)
    client.delete(ops.globals.worker("w-gone"))  # what its TTL does when it stops beating
    client.close()

    found = {w.id: w.lost for w in admin.workers()}
    listed = json.loads(run("workers", "--json").stdout)
    text = run("workers").stdout

    assert found == {"w-live": False, "w-gone": True}
    assert {w["id"]: w["lost"] for w in listed} == found
    assert "lost" in text


def test_cli_health_and_redis_client_health_check_give_one_report(
    settings_factory: Callable[..., Settings], run: Callable[..., Result]
) -> None:
    async def from_redis_client() -> dict[str, Any]:
        rc = RedisClient(settings_factory())
        try:
            return await rc.health_check()
        finally:
            await rc.aclose()

    from_client = anyio.run(from_redis_client)
    from_cli = json.loads(run("health", "--json").stdout)

    assert set(from_client) == set(from_cli) == set(HEALTH_KEYS)
    assert from_client["workers"] == from_cli["workers"] == 0


def test_series_sums_the_per_minute_counters_of_every_queue(admin: Admin) -> None:
    ops = admin.broker.ops
    minute = admin.broker.run(ops.server_time_ms()) // 60_000
    admin.broker.run(ops.count_outcomes(minute, {"a": {"done": 3}, "b": {"done": 2, "failed": 1}}))
    admin.broker.run(ops.announce_queue("a"))
    admin.broker.run(ops.announce_queue("b"))

    overview = admin.overview(minutes=10)
    data: dict[str, Any] = overview.to_json()

    assert overview.series.points[-1]["done"] == 5
    assert overview.series.points[-1]["failed"] == 1
    assert len(overview.series.points) == 10
    assert [r["queue"] for r in data["queues"]] == ["a", "b"]
