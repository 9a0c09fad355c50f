"""Fuzzing and fault interleavings with hypothesis, against real Redis.

* Any bytes where a job should be (a ready list, a record's ``a`` args field) end as a
  dead-lettered poison record; the worker goes on and runs the next good job.
* Random interleavings of enqueue, fetch, ack, fail, lost fetch replies, killed connections,
  lease expiry, reclaim and promotion keep the queue's invariants: every job is in exactly one
  place, none disappears, a stale lease token is always refused, a final job stays final.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import anyio
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskforge import JobStatus, Settings, Taskforge, Worker
from taskforge.job import JobPriority
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.keys import QueueKeys
from taskforge.protocol.records import STATUS_OF_LETTER, Leased, NewJob, Outcome
from taskforge.registry import Registry
from taskforge.serializer import load_job
from taskforge.signing import verify_fields
from taskforge.worker.executor import decode

FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# --------------------------------------------------------------------------- pure decoder


_TEXT = st.one_of(st.text(), st.binary().map(lambda b: b.decode("utf-8", "surrogateescape")))


@given(st.lists(_TEXT, min_size=7, max_size=7))
@settings(max_examples=500, deadline=None)
def test_decoding_any_record_fields_either_gives_a_job_or_raises_value_error(
    texts: list[str],
) -> None:
    lease = Leased("j1", "1", 0, *texts)
    for accepted in ("json", "pickle"):
        with contextlib.suppress(ValueError):
            load_job(decode(lease, "default", Registry()), accepted)
    with contextlib.suppress(ValueError):
        verify_fields(b"key", (lease.id, lease.task, "default", *texts[2:5]), lease.sig)


@given(
    st.fixed_dictionaries(
        {"id": st.text(min_size=1, max_size=20), "task": st.text(min_size=1)},
        optional={
            "args": st.lists(st.integers() | st.text() | st.none()),
            "serializer": st.sampled_from(["json", "pickle", "yaml", ""]),
            "max_retries": st.integers(),
            "timeout_s": st.floats(allow_nan=False) | st.none(),
            "priority": st.text(max_size=8),
        },
    )
)
@settings(max_examples=300, deadline=None)
def test_decoding_json_shaped_noise_gives_a_job_or_raises_value_error(raw: dict[str, Any]) -> None:
    args = json.dumps(raw.pop("args", []))
    lease = Leased(raw.pop("id"), "1", 0, raw.pop("task"), "", args, "", json.dumps(raw))
    with contextlib.suppress(ValueError):
        load_job(decode(lease, "default", Registry()), "json")


# --------------------------------------------------------------------------- through a worker


def _app(redis_url: str) -> tuple[Taskforge, list[int]]:
    app = Taskforge(Settings(redis_url=redis_url, prefix=f"fz-{uuid.uuid4().hex[:10]}"))
    ran: list[int] = []

    @app.task(name="fuzz.good", max_retries=0)
    def good(n: int) -> None:
        ran.append(n)

    return app, ran


def _burst(app: Taskforge) -> None:
    worker = Worker(app.settings, app.registry, burst=True, burst_horizon_s=0)
    anyio.run(worker.run)


def _raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)  # bytes in, bytes out


@given(junk=st.binary(max_size=300))
@FUZZ
def test_any_bytes_in_a_ready_list_are_buried_as_poison_and_the_worker_goes_on(
    redis_url: str, junk: bytes
) -> None:
    app, ran = _app(redis_url)
    keys = QueueKeys(app.settings.prefix, "default")
    raw = _raw(redis_url)
    raw.rpush(keys.ready(JobPriority.NORMAL), junk)
    handle = app.registry.get("fuzz.good").delay(7)

    _burst(app)

    assert raw.zscore(keys.dead, junk) is not None
    assert raw.hget(keys.job_prefix.encode() + junk, "error_type") == b"PoisonJob"
    assert app.client.record("default", handle.id).status == JobStatus.SUCCEEDED
    assert ran == [7]
    raw.close()
    app.client.close()


@given(junk=st.binary(max_size=300))
@FUZZ
def test_any_bytes_as_a_records_args_are_buried_as_poison_and_the_worker_goes_on(
    redis_url: str, junk: bytes
) -> None:
    app, ran = _app(redis_url)
    keys = QueueKeys(app.settings.prefix, "default")
    raw = _raw(redis_url)
    victim = app.registry.get("fuzz.good").delay(1)
    raw.hset(keys.job(victim.id), "a", b"~" + junk)  # never JSON
    handle = app.registry.get("fuzz.good").delay(2)

    _burst(app)

    rec = app.client.record("default", victim.id)
    assert rec.status == JobStatus.DEAD
    assert rec.error_type == "PoisonJob"
    assert raw.zscore(keys.dead, victim.id) is not None
    assert app.client.record("default", handle.id).status == JobStatus.SUCCEEDED
    assert ran == [2]
    raw.close()
    app.client.close()


# --------------------------------------------------------------------------- fault interleavings

PLACES = ("ready", "scheduled", "inflight", "dead")
WHERE = {
    JobStatus.QUEUED: "ready",
    JobStatus.SCHEDULED: "scheduled",
    JobStatus.RETRYING: "scheduled",
    JobStatus.ACTIVE: "inflight",
    JobStatus.DEAD: "dead",
    JobStatus.SUCCEEDED: None,
    JobStatus.CANCELLED: None,
}


class BrokerUnderFaults(RuleBasedStateMachine):
    """A real queue driven through random operations and faults; invariants checked each step."""

    redis_url = ""

    @initialize()
    def setup(self) -> None:
        prefix = f"fsm-{uuid.uuid4().hex[:10]}"
        self.settings = Settings(redis_url=self.redis_url, prefix=prefix, max_deliveries=3)
        self.broker = SyncBroker(self.settings)
        self.admin = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.keys = QueueKeys(prefix, "default")
        self.jobs: set[str] = set()
        self.held: list[Leased] = []  # leases a worker believes it owns (some stale)
        self.final: dict[str, str] = {}
        self.n = 0

    def teardown(self) -> None:
        if hasattr(self, "broker"):
            self.broker.close()
            self.admin.close()

    # ---- producers

    @rule(count=st.integers(1, 4), delayed=st.booleans(), prio=st.sampled_from(list(JobPriority)))
    def enqueue(self, count: int, delayed: bool, prio: JobPriority) -> None:
        new = []
        for _ in range(count):
            self.n += 1
            job_id = f"j{self.n}"
            new.append(NewJob(job_id, "t", prio, delay_ms=60_000 if delayed else 0))
        done = self.broker.run(self.broker.ops.enqueue("default", new))
        assert all(d.created for d in done)
        self.jobs.update(j.id for j in new)

    @rule()
    def enqueue_again_after_a_lost_reply(self) -> None:
        if not self.jobs:
            return
        job_id = sorted(self.jobs)[0]
        new = NewJob(job_id, "t", JobPriority.NORMAL)
        (done,) = self.broker.run(self.broker.ops.enqueue("default", [new]))
        assert not done.created

    # ---- workers

    @rule(count=st.integers(1, 5))
    def fetch(self, count: int) -> None:
        fetched = self.broker.run(self.broker.ops.fetch("default", count, "w"))
        self.held.extend(fetched.jobs)

    @rule(count=st.integers(1, 3))
    def fetch_whose_reply_is_lost(self, count: int) -> None:
        self.broker.run(self.broker.ops.fetch("default", count, "w"))

    def _current(self, lease: Leased) -> bool:
        deliveries, status = self.admin.hmget(self.keys.job(lease.id), "v", "s")
        return deliveries == lease.token and status == "a"

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 50), status=st.sampled_from(["succeeded", "dead", "cancelled"]))
    def finish(self, i: int, status: str) -> None:
        lease = self.held.pop(i % len(self.held))
        expected = self._current(lease)
        out = Outcome(lease.id, lease.token, JobStatus(status), error_type="E", error="e")
        (accepted,) = self.broker.run(self.broker.ops.finish("default", [out]))
        assert accepted == expected, "a stale token was accepted, or a current one refused"
        if accepted:
            self.final[lease.id] = status

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 50))
    def fail_and_retry(self, i: int) -> None:
        lease = self.held.pop(i % len(self.held))
        expected = self._current(lease)
        accepted = self.broker.run(
            self.broker.ops.retry("default", lease.id, lease.token, 60_000, ("E", "e", ""))
        )
        assert accepted == expected

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 50))
    def hand_back(self, i: int) -> None:
        lease = self.held.pop(i % len(self.held))
        expected = self._current(lease)
        (accepted,) = self.broker.run(self.broker.ops.requeue("default", [(lease.id, lease.token)]))
        assert accepted == expected

    @precondition(lambda self: self.held)
    @rule()
    def extend(self) -> None:
        lost, _ = self.broker.run(
            self.broker.ops.extend("default", [(x.id, x.token) for x in self.held])
        )
        assert lost == {x.id for x in self.held if not self._current(x)}

    # ---- faults and time

    @rule()
    def kill_connections(self) -> None:
        self.admin.client_kill_filter(_type="normal")

    @rule()
    def leases_expire(self) -> None:
        for job_id in self.admin.zrange(self.keys.inflight, 0, -1):
            self.admin.zadd(self.keys.inflight, {job_id: 0}, xx=True)

    @rule()
    def schedules_fall_due(self) -> None:
        for job_id in self.admin.zrange(self.keys.scheduled, 0, -1):
            self.admin.zadd(self.keys.scheduled, {job_id: 0}, xx=True)

    # ---- invariants

    @invariant()
    def every_job_is_in_exactly_one_place_and_final_jobs_stay_final(self) -> None:
        if not hasattr(self, "keys"):
            return
        k = self.keys
        ready: list[str] = []
        for key in k.ready_lists:
            ready += self.admin.lrange(key, 0, -1)
        where: dict[str, set[str]] = {p: set() for p in PLACES}
        where["ready"] = set(ready)
        assert len(ready) == len(where["ready"]), "a job is twice in the ready lists"
        for place in ("scheduled", "inflight", "dead"):
            where[place] = set(self.admin.zrange(getattr(k, place), 0, -1))
        for job_id in self.jobs:
            letter = self.admin.hget(k.job(job_id), "s")
            assert letter is not None, f"job {job_id} lost its record"
            status = STATUS_OF_LETTER[letter]
            places = [p for p in PLACES if job_id in where[p]]
            expected = WHERE[status]
            assert places == ([expected] if expected else []), (job_id, status, places)
            if job_id in self.final:
                assert status == self.final[job_id], f"final job {job_id} changed state"


@pytest.fixture
def fault_machine(redis_url: str) -> type[BrokerUnderFaults]:
    BrokerUnderFaults.redis_url = redis_url
    return BrokerUnderFaults


def test_random_interleavings_with_faults_keep_every_invariant(
    fault_machine: type[BrokerUnderFaults],
) -> None:
    run_state_machine_as_test(
        fault_machine,
        settings=settings(max_examples=40, stateful_step_count=40, deadline=None),
    )
