"""Cancellation: queued and scheduled jobs at once, running ones (async and sync) on request."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

from taskforge import JobFailedError, JobStatus, Taskforge
from taskforge.protocol.brokers import SyncBroker
from tests.support.timetasks import QUIET, key, wait_until

AppFactory = Callable[..., Taskforge]
WorkerProcess = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def events(app_factory: AppFactory, r: redis.Redis) -> Iterator[list[dict[str, Any]]]:
    """Every job:updates event published while the test runs (subscribed before it starts)."""
    seen: list[dict[str, Any]] = []
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(app_factory().settings.events_channel)
    pubsub.get_message(timeout=1)  # the subscribe confirmation
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                seen.append(json.loads(message["data"]))

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    yield seen
    stop.set()
    thread.join(2)
    pubsub.close()


def _cancelled_events(events: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e["job_id"] == job_id and e["status"] == "cancelled"]


def test_cancel_a_queued_job_removes_it(
    app_factory: AppFactory, events: list[dict[str, Any]]
) -> None:
    app = app_factory()
    handle = app.submit([app.call("sched.mark")])[0]

    status = handle.cancel()

    counts = app.client.broker.run(app.client.broker.ops.counts("default"))
    assert status is JobStatus.CANCELLED
    assert handle.status() is JobStatus.CANCELLED
    assert counts.ready_total == 0
    wait_until(lambda: _cancelled_events(events, handle.id), timeout_s=5)
    with pytest.raises(JobFailedError) as failed:
        handle.result(timeout=1)
    assert failed.value.status == "cancelled"


def test_cancel_a_scheduled_job_removes_it_from_the_schedule(app_factory: AppFactory) -> None:
    app = app_factory()

    @app.task
    def later() -> None: ...

    handle = later.schedule(timedelta(hours=1))

    status = handle.cancel()

    counts = app.client.broker.run(app.client.broker.ops.counts("default"))
    assert status is JobStatus.CANCELLED
    assert counts.scheduled == 0


def test_cancel_a_finished_job_changes_nothing(app_factory: AppFactory) -> None:
    app = app_factory()
    handle = app.submit([app.call("sched.mark")])[0]
    handle.cancel()

    again = handle.cancel()

    assert again is JobStatus.CANCELLED


@pytest.mark.parametrize(
    ("task", "stopped"), [("cancel.sleepy", None), ("cancel.busy", {"flag", "interrupted"})]
)
def test_cancel_a_running_job_aborts_it_and_never_retries(
    app_factory: AppFactory,
    worker_process: WorkerProcess,
    r: redis.Redis,
    prefix: str,
    events: list[dict[str, Any]],
    task: str,
    stopped: set[str] | None,
) -> None:
    app = app_factory()
    handle = app.submit([app.call(task)])[0]  # max_retries=3: a failure would be retried
    worker_process(*QUIET)
    wait_until(lambda: r.llen(key("started", prefix)) == 1, timeout_s=15)

    requested = handle.cancel()

    with pytest.raises(JobFailedError) as failed:
        handle.result(timeout=10)
    info = handle.info()
    assert requested is JobStatus.ACTIVE
    assert failed.value.status == "cancelled"
    assert info.status is JobStatus.CANCELLED
    assert info.attempts == 1
    # The event is published with the outcome, but reaches the listener thread a moment later.
    assert len(wait_until(lambda: _cancelled_events(events, handle.id), timeout_s=5)) == 1
    if stopped is not None:  # the sync task saw the flag, or was interrupted, and stopped
        assert wait_until(lambda: r.lrange(key("stopped", prefix), 0, -1)) in [[s] for s in stopped]
    counts = SyncBroker(app.settings).run(app.client.broker.ops.counts("default"))
    assert (counts.scheduled, counts.ready_total, counts.inflight) == (0, 0, 0)
