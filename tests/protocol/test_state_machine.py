"""Property tests: envelopes survive the wire; broker operations keep every job in one place."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from taskforge import Job, JobPriority, JobStatus, Settings
from taskforge.client import Client
from taskforge.job import PRIORITY_ORDER
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.records import STATUS_OF_LETTER, Leased, NewJob, Outcome
from taskforge.registry import Registry
from taskforge.task import Call, TaskOptions
from taskforge.worker.executor import decode

Q = "default"
MAX_DELIVERIES = 2

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Mostly NORMAL: order within one priority only shows when several jobs share it.
priorities = st.sampled_from([JobPriority.HIGH, *[JobPriority.NORMAL] * 3, JobPriority.LOW])
kwarg_names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)


@given(
    args=st.lists(json_values, max_size=5),
    kwargs=st.dictionaries(kwarg_names, json_values, max_size=5),
    priority=st.sampled_from(PRIORITY_ORDER),
    max_retries=st.integers(0, 50),
    timeout_s=st.none() | st.floats(min_value=0.001, max_value=1e6),
    task=st.from_regex(r"[a-z]+(\.[a-z_]+){0,3}", fullmatch=True),
)
def test_job_envelope_survives_a_json_round_trip(
    args: list[Any],
    kwargs: dict[str, Any],
    priority: JobPriority,
    max_retries: int,
    timeout_s: float | None,
    task: str,
) -> None:
    job = Job(
        id=uuid.uuid4().hex,
        task=task,
        args=args,
        kwargs=kwargs,
        priority=priority,
        max_retries=max_retries,
        timeout_s=timeout_s,
    )

    again = Job.model_validate_json(job.model_dump_json())

    assert again == job


@given(
    args=st.lists(json_values, max_size=5),
    kwargs=st.dictionaries(kwarg_names, json_values, max_size=5),
    priority=st.sampled_from(PRIORITY_ORDER),
)
def test_what_the_client_encodes_the_worker_decodes(
    args: list[Any], kwargs: dict[str, Any], priority: JobPriority
) -> None:
    client = Client(Settings(redis_url="memory://never-used"))
    call = Call("t.any", tuple(args), kwargs, TaskOptions(name="t.any", priority=priority))

    _, new = client.encode(call)
    f = dict(zip(new.fields[::2], new.fields[1::2], strict=True))
    lease = Leased(new.id, "1", 0, new.task, "", f.get("a", ""), f.get("k", ""), f.get("o", ""))
    job = decode(replace(lease, priority=new.priority.value), "default", Registry())

    assert (job.id, job.task, job.priority) == (new.id, "t.any", priority)
    assert job.args == args
    assert job.kwargs == kwargs


class BrokerMachine(RuleBasedStateMachine):
    """Drives the broker's scripts on real Redis against a model of where each job must be.

    Places: a ready list (order known), ``waiting`` (scheduled an hour out), ``due`` (retried
    with no delay: promoted by the next fetch), in flight (lease token known; ``expired`` once its
    lease lapsed), dead, or finished (succeeded/cancelled: record only).
    """

    redis_url: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.settings = Settings(
            redis_url=self.redis_url,
            prefix=f"tfsm-{uuid.uuid4().hex[:10]}",
            max_deliveries=MAX_DELIVERIES,
        )
        self.broker = SyncBroker(self.settings)
        # Extending a lease through a broker whose leases last 1 ms makes it lapse at once.
        lapse = self.settings.model_copy(update={"lease_s": 0.001})
        self.expirer = SyncBroker(lapse, self.broker.client)
        self.ops = self.broker.ops
        self.keys = self.ops.keys(Q)
        self.redis: Any = self.broker.client
        self.prio: dict[str, JobPriority] = {}
        self.ready: dict[JobPriority, list[str]] = {p: [] for p in PRIORITY_ORDER}
        self.waiting: set[str] = set()
        self.due: list[str] = []
        self.inflight: dict[str, str] = {}
        self.expired: set[str] = set()
        self.dead: set[str] = set()
        self.finished: dict[str, JobStatus] = {}
        self.deliveries: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.lost: Counter[str] = Counter()
        self.stale: list[tuple[str, str]] = []
        self.resent: list[tuple[str, str]] = []  # leases that recorded a success

    def teardown(self) -> None:
        keys = list(self.redis.scan_iter(match=f"{self.settings.prefix}:*", count=1000))
        if keys:
            self.redis.unlink(*keys)
        self.broker.close()

    # -------------------------------------------------------------- producing

    @rule(priority=priorities, later=st.booleans())
    def enqueue(self, priority: JobPriority, later: bool) -> None:
        job_id = f"j{len(self.prio)}"
        job = Job(id=job_id, task="t", priority=priority)
        new = NewJob.of(job, delay_ms=3_600_000 if later else 0)

        (res,) = self.broker.run(self.ops.enqueue(Q, [new]))

        assert res.created
        assert res.status is (JobStatus.SCHEDULED if later else JobStatus.QUEUED)
        self.prio[job_id] = priority
        if later:
            self.waiting.add(job_id)
        else:
            self.ready[priority].append(job_id)

    @precondition(lambda self: self.prio)
    @rule(data=st.data(), priority=priorities)
    def enqueue_duplicate(self, data: st.DataObject, priority: JobPriority) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.prio)))
        job = Job(id=job_id, task="t", priority=priority)

        (res,) = self.broker.run(self.ops.enqueue(Q, [NewJob.of(job)]))

        assert not res.created
        assert res.id == job_id
        assert res.status is self.expected_status(job_id)

    # -------------------------------------------------------------- fetching

    @rule(count=st.integers(1, 3))
    def fetch(self, count: int) -> None:
        segments = self.segments_before_fetch()

        fetched = self.broker.run(self.ops.fetch(Q, count, "sm-worker"))

        leased = [j.id for j in fetched.jobs]
        assert len(set(leased)) == len(leased)
        leftover = consume(segments, leased, count)
        for p in PRIORITY_ORDER:
            actual = self.redis.lrange(self.keys.ready(p), 0, -1)
            assert_matches(actual, leftover[p])
            self.ready[p] = actual
        for job in fetched.jobs:
            self.deliveries[job.id] += 1
            assert job.token == str(self.deliveries[job.id])
            assert job.attempts == self.attempts[job.id]
            self.inflight[job.id] = job.token

    @rule(count=st.integers(1, 3))
    def worker_dies_after_fetch(self, count: int) -> None:
        before = set(self.inflight)
        self.fetch(count)
        taken = sorted(set(self.inflight) - before)
        if taken:
            self.lapse(taken)

    def segments_before_fetch(self) -> dict[JobPriority, list[tuple[str, list[str]]]]:
        """What each ready list must look like when the fetch script starts leasing."""
        reclaimed: dict[JobPriority, list[str]] = {p: [] for p in PRIORITY_ORDER}
        for job_id in sorted(self.expired):
            self.stale.append((job_id, self.inflight.pop(job_id)))
            self.lost[job_id] += 1
            if self.lost[job_id] >= MAX_DELIVERIES:
                self.dead.add(job_id)  # poison: its worker "died" too often
            else:
                reclaimed[self.prio[job_id]].append(job_id)
        self.expired = set()
        promoted: dict[JobPriority, list[str]] = {p: [] for p in PRIORITY_ORDER}
        for job_id in self.due:
            promoted[self.prio[job_id]].append(job_id)
        self.due = []
        # Reclaimed jobs go to the front (their order among themselves is not promised),
        # promoted ones to the back; the jobs already waiting keep their order between.
        return {
            p: [("set", reclaimed[p]), ("list", self.ready[p]), ("set", promoted[p])]
            for p in PRIORITY_ORDER
        }

    # -------------------------------------------------------------- outcomes

    @precondition(lambda self: self.inflight)
    @rule(data=st.data(), dead=st.booleans())
    def finish(self, data: st.DataObject, dead: bool) -> None:
        job_id, token = self.pick_inflight(data)
        status = JobStatus.DEAD if dead else JobStatus.SUCCEEDED

        ok = self.broker.run(self.ops.finish(Q, [Outcome(job_id, token, status)]))

        assert ok == [True]
        self.attempts[job_id] += 1
        if dead:
            self.dead.add(job_id)
        else:
            self.finished[job_id] = status
            # Not stale: sent again (a lost reply), the same outcome is accepted as a no-op.
            self.stale.remove((job_id, token))
            self.resent.append((job_id, token))

    @precondition(lambda self: self.inflight)
    @rule(data=st.data())
    def retry_now(self, data: st.DataObject) -> None:
        job_id, token = self.pick_inflight(data)

        ok = self.broker.run(self.ops.retry(Q, job_id, token, 0, ("E", "again", "")))

        assert ok
        self.attempts[job_id] += 1
        self.due.append(job_id)

    @precondition(lambda self: self.inflight)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        job_id, token = self.pick_inflight(data)

        ok = self.broker.run(self.ops.requeue(Q, [(job_id, token)]))

        assert ok == [True]
        self.ready[self.prio[job_id]].insert(0, job_id)

    @precondition(lambda self: set(self.inflight) - self.expired)
    @rule(data=st.data())
    def leases_lapse(self, data: st.DataObject) -> None:
        live = sorted(set(self.inflight) - self.expired)
        self.lapse(sorted(data.draw(st.sets(st.sampled_from(live), min_size=1))))

    def lapse(self, job_ids: list[str]) -> None:
        """Let these leases run out, as when their worker died."""
        leases = [(job_id, self.inflight[job_id]) for job_id in job_ids]
        lost, _ = self.expirer.run(self.expirer.ops.extend(Q, leases))

        assert lost == set()
        deadline = max(self.redis.zscore(self.keys.inflight, job_id) for job_id in job_ids)
        give_up = time.monotonic() + 2
        while self.broker.run(self.ops.server_time_ms()) <= deadline:
            assert time.monotonic() < give_up, "Redis time did not pass a 1 ms lease"
        self.expired.update(job_ids)

    @precondition(lambda self: self.stale)
    @rule(data=st.data(), op=st.sampled_from(["finish", "retry", "requeue", "extend"]))
    def stale_token_is_refused(self, data: st.DataObject, op: str) -> None:
        job_id, token = data.draw(st.sampled_from(self.stale))
        o, b = self.ops, self.broker

        if op == "finish":
            refused = b.run(o.finish(Q, [Outcome(job_id, token, JobStatus.SUCCEEDED)])) == [False]
        elif op == "retry":
            refused = b.run(o.retry(Q, job_id, token, 0, ("E", "zombie", ""))) is False
        elif op == "requeue":
            refused = b.run(o.requeue(Q, [(job_id, token)])) == [False]
        else:
            refused = b.run(o.extend(Q, [(job_id, token)]))[0] == {job_id}

        assert refused, f"{op} with stale token {token} of {job_id} was accepted"

    # -------------------------------------------------------------- cancel and revive

    @precondition(lambda self: self.waiting_ids())
    @rule(data=st.data())
    def cancel_waiting(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.waiting_ids()))

        answer = self.broker.run(self.ops.cancel(Q, job_id, "sm-control"))

        assert answer == ("cancelled", "cancelled")
        self.ready[self.prio[job_id]] = [i for i in self.ready[self.prio[job_id]] if i != job_id]
        self.waiting.discard(job_id)
        self.due = [i for i in self.due if i != job_id]
        self.finished[job_id] = JobStatus.CANCELLED

    @precondition(lambda self: self.dead)
    @rule(data=st.data())
    def revive(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.dead)))

        moved = self.broker.run(self.ops.revive(Q, [job_id]))

        assert moved == 1
        self.dead.discard(job_id)
        self.ready[self.prio[job_id]].append(job_id)
        self.attempts[job_id] = 0
        self.lost[job_id] = 0

    # -------------------------------------------------------------- helpers

    def pick_inflight(self, data: st.DataObject) -> tuple[str, str]:
        job_id = data.draw(st.sampled_from(sorted(self.inflight)))
        token = self.inflight.pop(job_id)
        self.expired.discard(job_id)
        self.stale.append((job_id, token))
        return job_id, token

    def waiting_ids(self) -> list[str]:
        ready = [i for p in PRIORITY_ORDER for i in self.ready[p]]
        return sorted([*ready, *self.waiting, *self.due])

    def expected_status(self, job_id: str) -> JobStatus:
        if job_id in self.finished:
            return self.finished[job_id]
        if job_id in self.dead:
            return JobStatus.DEAD
        if job_id in self.inflight:
            return JobStatus.ACTIVE
        if job_id in self.waiting:
            return JobStatus.SCHEDULED
        if job_id in self.due:
            return JobStatus.RETRYING
        return JobStatus.QUEUED

    # -------------------------------------------------------------- invariants

    @invariant()
    def every_job_is_in_exactly_one_place(self) -> None:
        k = self.keys
        places: Counter[str] = Counter()
        for p in PRIORITY_ORDER:
            ids = self.redis.lrange(k.ready(p), 0, -1)
            assert ids == self.ready[p]
            places.update(ids)
        for key in (k.scheduled, k.inflight, k.dead):
            places.update(self.redis.zrange(key, 0, -1))
        assert set(self.redis.zrange(k.scheduled, 0, -1)) == self.waiting | set(self.due)
        assert set(self.redis.zrange(k.inflight, 0, -1)) == set(self.inflight)
        assert set(self.redis.zrange(k.dead, 0, -1)) == self.dead

        duplicated = {i for i, n in places.items() if n > 1}
        assert not duplicated, f"in two places at once: {duplicated}"
        assert not set(places) & set(self.finished), "a finished job is still queued somewhere"
        assert set(places) | set(self.finished) == set(self.prio), "a job was lost"

    @invariant()
    def a_resent_success_is_accepted_and_changes_nothing(self) -> None:
        if not self.resent:
            return
        ok = JobStatus.SUCCEEDED
        outcomes = [Outcome(i, t, ok, result_json='"again"') for i, t in self.resent]
        before = [self.broker.run(self.ops.record(Q, i)) for i, _ in self.resent]

        accepted = self.broker.run(self.ops.finish(Q, outcomes))

        assert all(accepted), f"a re-sent success was refused: {self.resent}"
        after = [self.broker.run(self.ops.record(Q, i)) for i, _ in self.resent]
        assert after == before

    @invariant()
    def stale_tokens_stay_refused(self) -> None:
        stale = sorted(set(self.stale))
        if not stale:
            return
        outcomes = [Outcome(i, t, JobStatus.SUCCEEDED, result_json='"zombie"') for i, t in stale]

        finished = self.broker.run(self.ops.finish(Q, outcomes))
        requeued = self.broker.run(self.ops.requeue(Q, stale))
        lost, _ = self.broker.run(self.ops.extend(Q, stale))

        assert not any(finished), f"a stale finish was accepted: {stale}"
        assert not any(requeued), f"a stale requeue was accepted: {stale}"
        assert lost == {i for i, _ in stale}

    @invariant()
    def records_agree_with_places(self) -> None:
        ids = sorted(self.prio)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "s", "n")
        for job_id, (status, attempts) in zip(ids, pipe.execute(), strict=True):
            assert STATUS_OF_LETTER[status] == self.expected_status(job_id), job_id
            assert int(attempts or 0) == self.attempts[job_id], job_id


def consume(
    segments: dict[JobPriority, list[tuple[str, list[str]]]], leased: list[str], count: int
) -> dict[JobPriority, list[tuple[str, list[str]]]]:
    """Check ``leased`` is the head of the ready lists in strict priority; return what is left.

    A ``set`` segment may be leased in any order, a ``list`` segment only front first.
    """
    total = sum(len(ids) for segs in segments.values() for _, ids in segs)
    assert len(leased) == min(count, total), (leased, segments)
    rest = list(leased)
    leftover: dict[JobPriority, list[tuple[str, list[str]]]] = {}
    for p in PRIORITY_ORDER:
        leftover[p] = []
        for kind, ids in segments[p]:
            taken, rest = rest[: len(ids)], rest[len(ids) :]
            if kind == "list":
                assert taken == ids[: len(taken)], f"FIFO broken in {p}: {taken} vs {ids}"
            else:
                assert set(taken) <= set(ids), f"priority order broken: {taken} not from {ids}"
            left = [i for i in ids if i not in taken]
            leftover[p].append((kind, left))
    return leftover


def assert_matches(actual: list[str], segments: list[tuple[str, list[str]]]) -> None:
    """``actual`` is the segments in order (``set`` segments in any order)."""
    at = 0
    for kind, ids in segments:
        chunk = actual[at : at + len(ids)]
        assert (chunk == ids) if kind == "list" else (sorted(chunk) == sorted(ids)), (
            actual,
            segments,
        )
        at += len(ids)
    assert at == len(actual), (actual, segments)


@pytest.mark.slow  # the same invariants, with faults: test_fuzz.py
def test_broker_operations_keep_every_job_in_exactly_one_place(redis_url: str) -> None:
    BrokerMachine.redis_url = redis_url

    run_state_machine_as_test(
        BrokerMachine,
        settings=settings(max_examples=50, stateful_step_count=50, deadline=None),
    )
