"""Idempotent enqueue: caller-supplied job ids and uniqueness keys with an explicit policy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import anyio
import anyio.from_thread
import pytest

from taskforge import ConfigurationError, JobStatus, Task, Taskforge, Worker
from tests.support.timetasks import wait_until

AppFactory = Callable[..., Taskforge]


@contextmanager
def running_worker(app: Taskforge) -> Iterator[Worker]:
    """A worker on an event loop thread of its own for the duration of the block."""
    worker = Worker(app.settings, app.registry, concurrency=4, block_s=0.2, grace_s=5)
    with anyio.from_thread.start_blocking_portal() as portal:
        done = portal.start_task_soon(worker.run)
        try:
            yield worker
        finally:
            portal.call(worker.stop)
            done.result(10)


def _gated(app: Taskforge) -> tuple[Task[[int], int], threading.Event]:
    gate = threading.Event()

    @app.task(name="unique.gated")
    def gated(n: int) -> int:
        gate.wait(10)
        return n

    return gated, gate


def test_same_job_id_returns_the_existing_job_and_says_so(app_factory: AppFactory) -> None:
    app = app_factory()
    gated, _ = _gated(app)

    first = gated.options(job_id="invoice-42").delay(1)
    second = gated.options(job_id="invoice-42").delay(2)

    counts = app.client.broker.run(app.client.broker.ops.counts("default"))
    assert (first.created, second.created) == (True, False)
    assert second.id == first.id == "invoice-42"
    assert counts.ready_total == 1
    assert second.info().job is not None and second.info().job.args == [1]  # type: ignore[union-attr]


def test_unique_while_queued_allows_a_new_job_once_the_first_starts(
    app_factory: AppFactory,
) -> None:
    app = app_factory()
    gated, gate = _gated(app)
    unique = gated.options(unique_key="report:7", unique_until="queued")
    first = unique.delay(1)
    duplicate = unique.delay(2)

    with running_worker(app):
        wait_until(lambda: first.status() is JobStatus.ACTIVE)
        while_running = unique.delay(3)
        gate.set()
        results = first.result(timeout=10), while_running.result(timeout=10)

    assert (duplicate.created, duplicate.id) == (False, first.id)
    assert while_running.created and while_running.id != first.id
    assert results == (1, 3)


def test_unique_while_running_refuses_until_the_first_finishes(app_factory: AppFactory) -> None:
    app = app_factory()
    gated, gate = _gated(app)
    unique = gated.options(unique_key="sync:acme", unique_until="running")
    first = unique.delay(1)

    with running_worker(app):
        wait_until(lambda: first.status() is JobStatus.ACTIVE)
        while_running = unique.delay(2)
        gate.set()
        first.result(timeout=10)
        after = unique.delay(3)
        after_result = after.result(timeout=10)

    assert (while_running.created, while_running.id) == (False, first.id)
    assert after.created and after_result == 3


def test_unique_for_a_ttl_holds_after_the_job_ends(app_factory: AppFactory) -> None:
    app = app_factory()
    gated, gate = _gated(app)
    gate.set()
    unique = gated.options(unique_key="digest", unique_until="ttl", unique_ttl=1.0)
    first = unique.delay(1)

    with running_worker(app):
        first.result(timeout=10)
        after_finish = unique.delay(2)
        later = wait_until(lambda: (h := unique.delay(3)).created and h, timeout_s=5)

    assert (after_finish.created, after_finish.id) == (False, first.id)
    assert later.id != first.id


def test_ttl_policy_needs_a_ttl(app_factory: AppFactory) -> None:
    app = app_factory()
    gated, _ = _gated(app)

    with pytest.raises(ConfigurationError, match="unique_ttl"):
        gated.options(unique_key="k", unique_until="ttl")


def test_cancelled_job_releases_its_unique_key(app_factory: AppFactory) -> None:
    app = app_factory()
    gated, _ = _gated(app)
    unique = gated.options(unique_key="once", unique_until="running")
    first = unique.delay(1)

    first.cancel()
    second = unique.delay(2)

    assert second.created and second.id != first.id
