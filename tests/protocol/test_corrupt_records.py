"""Job records the scripts cannot read are buried as poison with their reason; the queue flows on.

Each test damages one record by hand, as a stray ``HSET``/``HDEL`` or a half-restored backup
would, in each place a job can wait (scheduled, ready, in flight with an expired lease), then runs
a burst worker on a real Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import pytest
import redis

from taskforge import Taskforge, Worker
from taskforge.protocol.keys import QueueKeys

pytestmark = pytest.mark.anyio

AppFactory = Callable[..., Taskforge]

#: (record field, value, the word the reason names) damage; value None = the field is deleted.
#: (An absent priority or attempts is no damage: the record leaves out what equals its default.)
DAMAGE = [
    ("s", None, "status"),
    ("p", "bogus", "priority"),
    ("n", "x", "attempts"),
    ("n", "inf", "attempts"),
    ("t", None, "task"),
]
PLACES = ["scheduled", "ready", "inflight"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def raw_redis(app: Taskforge) -> redis.Redis:
    return redis.Redis.from_url(app.settings.redis_url, decode_responses=True)


def keys_of(app: Taskforge) -> QueueKeys:
    return QueueKeys(app.settings.prefix, "default")


def place_victim(r: redis.Redis, k: QueueKeys, job_id: str, place: str) -> None:
    """Move a queued job to ``place``, due or expired now."""
    if place == "ready":
        return
    for ready in k.ready_lists:
        r.lrem(ready, 0, job_id)
    if place == "scheduled":
        r.zadd(k.scheduled, {job_id: 0})
        r.hset(k.job(job_id), "s", "s")
    else:  # in flight on a worker that died: deliveries 1, lease long expired
        r.zadd(k.inflight, {job_id: 0})
        r.hset(k.job(job_id), mapping={"s": "a", "v": 1})


def damage(r: redis.Redis, key: str, field: str, value: str | None) -> None:
    if value is None:
        r.hdel(key, field)
    else:
        r.hset(key, field, value)


async def drain(app: Taskforge, limit_s: float = 20) -> None:
    worker = Worker(app.settings, app.registry, concurrency=2, burst=True, block_s=0.5)
    with anyio.fail_after(limit_s):
        await worker.run()


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize(("field", "value", "word"), DAMAGE)
async def test_an_unreadable_record_is_buried_as_poison_and_the_good_jobs_run(
    app_factory: AppFactory, place: str, field: str, value: str | None, word: str
) -> None:
    app = app_factory()
    ran: list[int] = []

    @app.task(name="corrupt.record")
    def record(n: int) -> None:
        ran.append(n)

    victim = record.options(job_id="victim").delay(-1).id
    for n in range(5):
        record.delay(n)
    r, k = raw_redis(app), keys_of(app)
    place_victim(r, k, victim, place)
    damage(r, k.job(victim), field, value)

    await drain(app)

    assert sorted(ran) == [0, 1, 2, 3, 4]
    rec = r.hgetall(k.job(victim))
    assert rec["s"] == "x"
    assert rec["error_type"] == "PoisonJob"
    assert word in rec["error"] and "unreadable" in rec["error"]
    assert r.zscore(k.dead, victim) is not None
    for ready in k.ready_lists:
        assert victim not in r.lrange(ready, 0, -1)
    assert r.zscore(k.scheduled, victim) is None
    assert r.zscore(k.inflight, victim) is None
    assert app.client.record("default", victim).status == "dead"


async def test_a_record_of_the_wrong_type_is_buried_not_an_endless_script_error(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    ran: list[int] = []

    @app.task(name="corrupt.wrongtype")
    def record(n: int) -> None:
        ran.append(n)

    victim = record.options(job_id="victim").delay(-1).id
    for n in range(3):
        record.delay(n)
    r, k = raw_redis(app), keys_of(app)
    place_victim(r, k, victim, "scheduled")
    r.delete(k.job(victim))
    r.set(k.job(victim), "not a hash")

    await drain(app)

    assert sorted(ran) == [0, 1, 2]
    assert r.zscore(k.dead, victim) is not None
    assert r.zscore(k.scheduled, victim) is None


async def test_a_script_error_is_logged_as_what_it_is_not_as_unreachable_redis(
    app_factory: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_factory()
    r, k = raw_redis(app), keys_of(app)
    r.set(k.inflight, "a string where the in-flight zset belongs")
    worker = Worker(app.settings, app.registry, concurrency=1, burst=True, block_s=0.5)

    with caplog.at_level(logging.WARNING, logger="taskforge.worker"):
        with anyio.move_on_after(1.5):
            await worker.run()

    text = caplog.text
    assert "WRONGTYPE" in text
    assert "cannot reach Redis" not in text
