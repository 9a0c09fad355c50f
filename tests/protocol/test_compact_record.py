"""The compact job record: a waiting job's hash holds only what differs from its defaults, stays
a listpack, and reads back through ``parse_record`` as the same ``JobRecord`` as before."""

from __future__ import annotations

import re
from collections.abc import Callable

import redis

from taskforge import JobStatus, Taskforge
from taskforge.job import JobPriority, new_job_id
from taskforge.protocol.keys import QueueKeys


def raw_redis(app: Taskforge) -> redis.Redis:
    return redis.Redis.from_url(app.settings.redis_url, decode_responses=True)


def test_new_ids_are_16_base64url_characters() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids)


def test_a_new_id_never_starts_with_a_dash_so_the_cli_takes_it_as_an_argument() -> None:
    # One base64url draw in 64 starts with '-': over 5,000 ids about 78 would, without the redraw.
    assert not [i for i in (new_job_id() for _ in range(5000)) if i.startswith("-")]


def test_a_waiting_no_op_job_is_task_status_and_created_time_in_a_listpack(
    app_factory: Callable[..., Taskforge],
) -> None:
    app = app_factory()

    @app.task(name="cr.noop", max_retries=5)
    def noop(*args: int) -> None:
        """A task."""

    h = noop.delay()
    r, k = raw_redis(app), QueueKeys(app.settings.prefix, "default")

    assert k.job(h.id) == f"{app.settings.prefix}:{{default}}:j:{h.id}"
    assert sorted(r.hgetall(k.job(h.id))) == ["c", "s", "t"]  # no enq: a generated id
    assert r.hget(k.job(h.id), "s") == "q"
    assert r.object("encoding", k.job(h.id)) == "listpack"
    # Only what the call changes: arguments, a priority, per-call options, a caller's id.
    h2 = noop.options(priority="high", max_retries=1, job_id="mine").delay(1, 2)
    rec = r.hgetall(k.job(h2.id))
    assert {f: rec[f] for f in ("a", "p", "o")} == {"a": "[1,2]", "p": "high",
                                                    "o": '{"max_retries":1}'}  # fmt: skip
    assert "enq" in rec and "k" not in rec and "r" not in rec
    # Read back: status words, and the task's registered options under the call's overrides.
    info = h.info()
    assert info.status is JobStatus.QUEUED and info.job is not None
    assert (info.job.task, info.job.args, info.job.max_retries) == ("cr.noop", [], 5)
    assert info.created_ms == info.enqueued_ms == info.run_at_ms
    info2 = h2.info()
    assert info2.job is not None and info2.job.priority is JobPriority.HIGH
    assert (info2.job.args, info2.job.max_retries) == ([1, 2], 1)
    r.close()
