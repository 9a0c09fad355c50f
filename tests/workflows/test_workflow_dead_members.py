"""A workflow member that dies by any path fails its workflow, once: buried as poison by the
fetch script (lost deliveries, an unreadable record), dead after its retries, or cancelled."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from taskforge import Taskforge, WorkflowFailedError, WorkflowStatus, chain, chord
from taskforge.protocol.brokers import AsyncBroker
from taskforge.protocol.keys import QueueKeys
from taskforge.workflow.advance import WorkflowAdvancer
from taskforge.workflow.ops import outbox
from tests.workflows.test_workflows import drain, make_app, runs, t


def fetch(app: Taskforge, count: int) -> Any:
    broker = app.client.broker
    return broker.run(broker.ops.fetch("default", count, "lost-worker"))


def replay_until_advanced(app: Taskforge) -> None:
    """Replay the outbox (entries are due once a lease has passed) until one advances."""

    async def go() -> None:
        broker = AsyncBroker(app.settings)
        with anyio.fail_after(10):
            while not await WorkflowAdvancer(broker).replay(["default"]):
                await anyio.sleep(0.05)
            await WorkflowAdvancer(broker).replay(["default"])  # a second replay changes nothing
        await broker.aclose()

    anyio.run(go)


def lose_leases_until_poison(app: Taskforge, member: str) -> None:
    """Lease the member, let the lease lapse (its worker "died"), reclaim: poison at the limit."""
    key = QueueKeys(app.settings.prefix, "default").job(member)
    deadline = time.monotonic() + 10
    while app.client.broker.client.hget(key, "s") != "x":  # dead
        assert time.monotonic() < deadline, "the member was never buried as poison"
        fetch(app, 1)
        time.sleep(0.05)


def test_a_member_poisoned_by_lost_deliveries_fails_its_workflow_once(any_url: str) -> None:
    app = make_app(any_url, lease_s=0.2, max_deliveries=1)
    add, note = t(app, "add"), t(app, "note")
    h = chain(add.s(1, 2), add.s(3)).on_failure(note.s()).delay()
    member = f"wf:{h.id}:0"

    lose_leases_until_poison(app, member)
    replay_until_advanced(app)
    drain(app)

    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    assert failed.value.job_id == member
    assert failed.value.error_type == "PoisonJob"
    assert [m.status for m in h.info().members][:2] == ["dead", "cancelled"]
    assert runs(app, "add") == []
    assert len(runs(app, "note")) == 1  # on_failure ran exactly once
    assert runs(app, "note")[0][0] == member
    assert app.client.broker.client.zcard(outbox(app.settings.prefix, "default")) == 0


def test_a_member_with_an_unreadable_record_fails_its_chord_not_the_callback(any_url: str) -> None:
    app = make_app(any_url, lease_s=0.2)
    add, total = t(app, "add"), t(app, "total")
    c = chord([add.s(1, 1), add.s(2, 2)], total.s()).delay()
    member = f"wf:{c.id}:1"
    key = QueueKeys(app.settings.prefix, "default").job(member)
    app.client.broker.client.hset(key, "p", "bogus")

    drain(app)
    replay_until_advanced(app)
    drain(app)

    info = c.info()
    assert info.status is WorkflowStatus.FAILED
    assert info.failed_member == member
    assert info.error is not None and info.error.startswith("PoisonJob: poison: unreadable")
    assert runs(app, "total") == []


def test_a_member_record_of_the_wrong_type_fails_its_workflow(redis_url: str) -> None:
    app = make_app(redis_url, lease_s=0.2)
    h = chain(t(app, "add").s(1, 2), t(app, "add").s(3)).delay()
    member = f"wf:{h.id}:0"
    r = app.client.broker.client
    key = QueueKeys(app.settings.prefix, "default").job(member)
    r.delete(key)
    r.set(key, "not a hash")

    drain(app)
    replay_until_advanced(app)

    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    assert failed.value.job_id == member
    assert failed.value.error_type == "PoisonJob"


def test_a_member_cancelled_while_its_worker_died_fails_its_workflow(any_url: str) -> None:
    app = make_app(any_url, lease_s=0.2)
    h = chain(t(app, "add").s(1, 2), t(app, "add").s(3)).delay()
    member = f"wf:{h.id}:0"
    assert len(fetch(app, 1).jobs) == 1  # leased by a worker that then dies
    assert app.handle(member).cancel() is not None  # flags the running member for abort

    key = QueueKeys(app.settings.prefix, "default").job(member)
    deadline = time.monotonic() + 10
    while app.client.broker.client.hget(key, "s") != "c":  # cancelled
        assert time.monotonic() < deadline
        fetch(app, 0)  # reclaims the lapsed lease: the member stays cancelled
        time.sleep(0.05)
    replay_until_advanced(app)

    with pytest.raises(WorkflowFailedError) as failed:
        h.result(timeout=5)
    assert failed.value.job_id == member
    assert runs(app, "add") == []
