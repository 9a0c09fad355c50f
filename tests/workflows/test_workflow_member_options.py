"""A signature's per-call options reach its member job; those a member cannot honour are refused
at ``.delay()`` with nothing written."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskforge import JobPriority, Taskforge, WorkflowError, chain, group
from taskforge.job import JobRecord
from tests.workflows.test_workflows import drain, make_app, redis_keys, runs, t


@pytest.fixture
def app(any_url: str) -> Taskforge:
    return make_app(any_url)


def member(app: Taskforge, wid: str, node: int, queue: str = "default") -> JobRecord:
    record = app.client.broker.run(app.client.broker.ops.record(queue, f"wf:{wid}:{node}"))
    assert record is not None and record.job is not None
    return record


def test_per_call_options_reach_the_first_member(app: Taskforge) -> None:
    add = t(app, "add")
    tuned = add.options(queue="fast", priority="high", soft_timeout=30, expires=600, timeout=90)
    before_s = time.time()

    h = group(tuned.s(1, 1), add.s(2, 2)).delay()

    job = member(app, h.id, 0, "fast").job
    assert job is not None
    assert job.priority is JobPriority.HIGH
    assert job.soft_timeout_s == 30
    assert job.expires_ms is not None
    assert before_s * 1000 + 600_000 <= job.expires_ms <= time.time() * 1000 + 600_000
    plain = member(app, h.id, 1).job
    assert plain is not None and plain.soft_timeout_s is None and plain.expires_ms is None


def test_a_later_step_counts_expires_from_its_own_enqueue(app: Taskforge) -> None:
    add = t(app, "add")
    at = datetime.now(UTC) + timedelta(hours=1)
    h = chain(
        add.s(1, 2), add.options(soft_timeout=5, expires=120).s(3), add.options(expires=at).s(4)
    ).delay()

    drain(app)

    assert h.result(timeout=5) == 10
    second, third = member(app, h.id, 1).job, member(app, h.id, 2).job
    assert second is not None and third is not None
    assert second.soft_timeout_s == 5
    assert second.expires_ms is not None and second.expires_ms > time.time() * 1000 + 100_000
    assert third.expires_ms == int(at.timestamp() * 1000)


def test_an_expired_member_is_cancelled_and_fails_its_workflow(app: Taskforge) -> None:
    add = t(app, "add")
    h = chain(add.s(1, 2), add.s(3)).delay()
    gone = datetime.now(UTC) - timedelta(seconds=1)  # already past when the step is enqueued
    late = chain(add.options(expires=gone).s(1, 2), add.s(3)).delay()

    drain(app)

    assert h.result(timeout=5) == 6
    assert [m.status for m in late.info().members] == ["cancelled", "cancelled"]
    assert runs(app, "add") == [(1, 2), (3, 3)]


@pytest.mark.parametrize(
    ("options", "words"),
    [({"job_id": "mine"}, "job_id"), ({"unique_key": "once"}, "unique_key")],
)
def test_options_a_member_cannot_honour_are_refused_at_delay(
    app: Taskforge, options: dict[str, Any], words: str
) -> None:
    add = t(app, "add")
    with pytest.raises(WorkflowError, match=words):
        chain(add.s(1, 2), add.options(**options).s(3)).delay()
    with pytest.raises(WorkflowError, match=words):
        add.s(1, 2).on_failure(add.options(**options).si(0, 0)).delay()
    assert redis_keys(app) == []
