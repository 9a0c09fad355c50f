"""A waiting job whose counters were damaged by hand still reads: the client, the admin API, the
``taskforge job`` command and the dashboard's job page show it, its damaged fields named.

The fetch buries such a job as poison when a worker reaches it
(tests/protocol/test_corrupt_records.py); until then, reading it must not raise.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import redis
from typer.testing import CliRunner

from taskforge import Admin, JobHandle, JobStatus, Taskforge
from taskforge.cli import cli
from taskforge.dashboard import create_app
from taskforge.protocol.keys import QueueKeys

AppFactory = Callable[..., Taskforge]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def add(a: int, b: int) -> int:
    """Adds."""
    return a + b


@pytest.fixture
def damaged(app_factory: AppFactory) -> tuple[Taskforge, JobHandle[int]]:
    """An app and a queued job of it whose ``attempts`` and ``created_ms`` are not numbers."""
    app = app_factory()
    handle = app.task(name="damaged.add")(add).delay(1, 2)
    job_id = handle.id
    r = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    key = QueueKeys(app.settings.prefix, "default").job(job_id)
    r.hset(key, mapping={"n": "x", "c": "inf"})
    r.close()
    return app, handle


def test_a_damaged_counter_reads_as_unknown_through_the_client(
    damaged: tuple[Taskforge, JobHandle[int]],
) -> None:
    _, handle = damaged

    record = handle.info()

    assert handle.status() is JobStatus.QUEUED
    assert (record.attempts, record.created_ms) == (0, None)
    assert record.unreadable_fields == ("attempts", "created_ms")
    assert record.task == "damaged.add" and record.job is not None and record.job.args == [1, 2]


def test_a_damaged_counter_reads_as_unknown_through_the_admin_api(
    damaged: tuple[Taskforge, JobHandle[int]],
) -> None:
    app, handle = damaged
    job_id = handle.id

    with Admin(app.settings) as admin:
        queue, record = admin.job(job_id)
        listed = admin.listing("default").sections

    assert queue == "default" and record.status is JobStatus.QUEUED
    assert record.unreadable_fields == ("attempts", "created_ms")
    assert [j.id for jobs in listed.values() for j in jobs] == [job_id]


def test_the_job_command_names_the_damaged_counters(
    damaged: tuple[Taskforge, JobHandle[int]],
) -> None:
    app, handle = damaged
    job_id = handle.id
    env = {"REDIS_URL": app.settings.redis_url, "TASKFORGE_PREFIX": app.settings.prefix}
    env["COLUMNS"] = "220"
    runner = CliRunner()

    shown = runner.invoke(cli, ["job", job_id], env=env, catch_exceptions=False)
    as_json = runner.invoke(cli, ["job", job_id, "--json"], env=env, catch_exceptions=False)

    assert shown.exit_code == 0, shown.output
    assert "unreadable" in shown.stdout and "attempts, created_ms" in shown.stdout
    assert json.loads(as_json.stdout)["unreadable_fields"] == ["attempts", "created_ms"]


@pytest.mark.anyio
async def test_the_dashboard_job_page_names_the_damaged_counters(
    damaged: tuple[Taskforge, JobHandle[int]],
) -> None:
    app, handle = damaged
    transport = httpx.ASGITransport(app=create_app(app.settings))

    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
        page = await client.get(f"/jobs/{handle.id}")

    assert page.status_code == 200, page.text
    assert 'id="job-unreadable"' in page.text and "attempts, created_ms" in page.text
