"""Records the previous release wrote (key word ``job``, one ``envelope`` field, status words)
move to the compact layout with ``Admin.upgrade_records`` / ``taskforge upgrade-records`` and
then run on a worker of this release; running the upgrade again changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
import redis
from typer.testing import CliRunner

from taskforge import Admin, ConfigurationError, JobStatus, Taskforge, Worker
from taskforge.cli import cli
from taskforge.job import JobPriority
from taskforge.protocol.keys import QueueKeys

KEY = "upgrade-key"


def old_record(
    r: redis.Redis, k: QueueKeys, job_id: str, task: str, args: list[Any], **extra: Any
) -> str:
    """Write a waiting job as the previous release did (by hand) and queue its id; an id with
    ``sign`` in it is signed with :data:`KEY` as that release signed."""
    envelope = {"id": job_id, "args": args, "kwargs": {}, "created_ms": 1, "task": task,
                "queue": k.queue, "priority": "normal", "max_retries": 3, "retry_backoff_s": 60.0,
                "retry_backoff_cap_s": 3600.0, "retry_jitter": False, "timeout_s": None,
                **extra}  # fmt: skip
    text = json.dumps(envelope, separators=(",", ":"))
    if "sign" in job_id:
        mac = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
        text = f'{text[:-1]},"sig":"{mac}"}}'
    key = f"{k.base}:job:{job_id}"
    r.hset(key, mapping={"envelope": text, "task": task, "priority": "normal",
                         "status": "queued", "attempts": "0", "deliveries": "0",
                         "created_ms": "1700000000000", "enqueued_ms": "1700000000000",
                         "run_at_ms": "1700000000000", "enq": "t0"})  # fmt: skip
    r.rpush(k.ready(JobPriority.NORMAL), job_id)
    return key


def test_old_records_are_upgraded_once_and_then_run(
    app_factory: Callable[..., Taskforge],
) -> None:
    app = app_factory(signing_key=KEY)
    ran: list[Any] = []

    @app.task(name="up.add")
    def add(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    r = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    k = QueueKeys(app.settings.prefix, "default")
    r.sadd(f"{app.settings.prefix}:queues", "default")
    old = [old_record(r, k, f"old-sign-{i}", "up.add", [i, 1]) for i in range(3)]
    old.append(old_record(r, k, "old-plain", "up.add", [5, 5], max_retries=0))
    r.expire(old[0], 3600)

    with Admin(app.settings) as admin:
        (first,) = admin.upgrade_records(["default"])
        (again,) = admin.upgrade_records(["default"])

    assert (first.moved, first.changed) == (4, 0)
    assert (again.moved, again.skipped, again.changed) == (0, 0, 0)
    assert not any(r.exists(key) for key in old)
    new = r.hgetall(k.job("old-sign-0"))
    assert new["s"] == "q" and new["t"] == "up.add" and new["a"] == "[0,1]"
    assert "envelope" not in new and "g" in new
    assert 0 < r.ttl(k.job("old-sign-0")) <= 3600
    assert json.loads(r.hget(k.job("old-plain"), "o") or "{}") == {"max_retries": 0}

    anyio.run(Worker(app.settings, app.registry, burst=True, burst_horizon_s=0).run)

    assert sorted(ran) == [(0, 1), (1, 1), (2, 1)]
    for job_id in ("old-sign-0", "old-sign-1", "old-sign-2"):
        record = app.client.record("default", job_id)
        assert record.status is JobStatus.SUCCEEDED, (job_id, record.error)
    # Unsigned before the upgrade, unsigned after: a worker with the key refuses it, as before.
    unsigned = app.client.record("default", "old-plain")
    assert (unsigned.status, unsigned.error_type) == (JobStatus.DEAD, "SignatureError")
    r.close()


def test_the_cli_upgrades_and_says_what_it_moved(app_factory: Callable[..., Taskforge]) -> None:
    app = app_factory()
    r = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    k = QueueKeys(app.settings.prefix, "default")
    r.sadd(f"{app.settings.prefix}:queues", "default")
    old_record(r, k, "old-1", "up.any", [1])
    env = {"REDIS_URL": app.settings.redis_url, "TASKFORGE_PREFIX": app.settings.prefix}

    first = CliRunner().invoke(cli, ["upgrade-records", "--json"], env=env)
    again = CliRunner().invoke(cli, ["upgrade-records"], env=env)

    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == [{"queue": "default", "moved": 1, "skipped": 0,
                                         "changed": 0, "recovered": 0}]  # fmt: skip
    assert again.exit_code == 0 and "default: 0 moved" in again.stdout
    assert r.hget(k.job("old-1"), "a") == "[1]"
    r.close()


def test_a_job_a_new_worker_buried_before_the_upgrade_is_recovered_and_revived(
    app_factory: Callable[..., Taskforge],
) -> None:
    # The documented order is: stop old workers, upgrade, start new ones. Started too early, a
    # new worker finds no compact record for an old queued id and dead-letters it; the upgrade
    # must then give the dead record its call back (not drop the old one), so a revive runs it.
    app = app_factory()
    ran: list[Any] = []

    @app.task(name="up.add")
    def add(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    r = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    k = QueueKeys(app.settings.prefix, "default")
    r.sadd(f"{app.settings.prefix}:queues", "default")
    old_record(r, k, "early", "up.add", [2, 3])
    anyio.run(Worker(app.settings, app.registry, burst=True, burst_horizon_s=0).run)
    assert r.hget(k.job("early"), "s") == "x" and "t" not in r.hgetall(k.job("early"))

    with Admin(app.settings) as admin:
        (up,) = admin.upgrade_records(["default"])
        assert (up.moved, up.recovered) == (0, 1)
        assert not r.exists(f"{k.base}:job:early")
        record = app.client.record("default", "early")
        assert record.status is JobStatus.DEAD and "no job record" in (record.error or "")
        assert admin.dead_requeue(ids=["early"]).total == 1

    anyio.run(Worker(app.settings, app.registry, burst=True, burst_horizon_s=0).run)

    assert ran == [(2, 3)]
    assert app.client.record("default", "early").status is JobStatus.SUCCEEDED
    r.close()


@pytest.mark.parametrize("key", [None, "another-key"])
def test_the_upgrade_refuses_to_strip_signatures_it_cannot_renew(
    app_factory: Callable[..., Taskforge], key: str | None
) -> None:
    # Moved without the workers' key, a signed job would lose its signature and be refused by
    # every worker: the upgrade must refuse up front, with nothing moved.
    app = app_factory(signing_key=key) if key else app_factory()
    r = redis.Redis.from_url(app.settings.redis_url, decode_responses=True)
    k = QueueKeys(app.settings.prefix, "default")
    r.sadd(f"{app.settings.prefix}:queues", "default")
    plain = old_record(r, k, "old-plain", "up.add", [1, 1])
    signed = old_record(r, k, "old-sign-1", "up.add", [1, 2])
    env = {"REDIS_URL": app.settings.redis_url, "TASKFORGE_PREFIX": app.settings.prefix}
    if key:
        env["TASKFORGE_SIGNING_KEY"] = key

    with (
        Admin(app.settings) as admin,
        pytest.raises(ConfigurationError, match="TASKFORGE_SIGNING_KEY"),
    ):
        admin.upgrade_records(["default"])
    result = CliRunner().invoke(cli, ["upgrade-records"], env=env)

    assert result.exit_code == 2 and "nothing was moved" in result.output
    assert r.exists(plain) and r.exists(signed)
    assert not r.exists(k.job("old-plain")) and not r.exists(k.job("old-sign-1"))
    r.close()
