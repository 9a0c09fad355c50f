"""Broker operations (the Lua scripts) on real Redis and memory://: every state change, fenced."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from redis.crc import key_slot

from taskforge import Job, JobPriority, JobStatus, Settings
from taskforge.job import new_job_id
from taskforge.protocol.brokers import SyncBroker
from taskforge.protocol.records import Leased, NewJob, Outcome

Q = "default"
HIGH, NORMAL, LOW = JobPriority.HIGH, JobPriority.NORMAL, JobPriority.LOW
T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout_s: float = 5.0) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.01)


def new_job(
    priority: JobPriority = NORMAL, *, job_id: str | None = None, delay_ms: int = 0
) -> NewJob:
    """A job with a valid envelope, as the client would build it."""
    given = job_id is not None
    job_id = job_id or new_job_id()
    envelope = Job(id=job_id, task="t.echo", args=[job_id], priority=priority)
    return NewJob.of(envelope, delay_ms=delay_ms, given_id=given)


class Harness:
    """A SyncBroker plus shortcuts for one queue."""

    def __init__(self, broker: SyncBroker):
        self.broker = broker
        self.ops = broker.ops
        self.keys = broker.ops.keys(Q)
        self.redis: Any = broker.client

    def enqueue(self, *jobs: NewJob) -> list[Any]:
        return self.broker.run(self.ops.enqueue(Q, list(jobs)))

    def put(self, priority: JobPriority = NORMAL, **kw: Any) -> str:
        job = new_job(priority, **kw)
        (res,) = self.enqueue(job)
        assert res.created
        return job.id

    def fetch(self, count: int = 1) -> list[Leased]:
        return self.broker.run(self.ops.fetch(Q, count, "w-test")).jobs

    def fetch_one(self) -> Leased:
        (lease,) = self.fetch(1)
        return lease

    def running(self, priority: JobPriority = NORMAL) -> Leased:
        """Enqueue a job and lease it (the queue must hold nothing more urgent)."""
        job_id = self.put(priority)
        lease = self.fetch_one()
        assert lease.id == job_id
        return lease

    def finish(self, lease: Leased, status: JobStatus = JobStatus.SUCCEEDED, **kw: Any) -> bool:
        outcome = Outcome(lease.id, lease.token, status, **kw)
        return self.broker.run(self.ops.finish(Q, [outcome]))[0]

    def record(self, job_id: str) -> Any:
        return self.broker.run(self.ops.record(Q, job_id))

    def ready(self, priority: JobPriority = NORMAL) -> list[str]:
        return list(self.redis.lrange(self.keys.ready(priority), 0, -1))

    def zset(self, key: str) -> list[str]:
        return list(self.redis.zrange(key, 0, -1))


@pytest.fixture
def make(any_url: str, prefix: str) -> Iterator[Callable[..., Harness]]:
    """Harnesses on the test Redis (or a memory:// server) with this test's prefix."""
    made: list[Harness] = []

    def build(**overrides: Any) -> Harness:
        h = Harness(SyncBroker(Settings(redis_url=any_url, prefix=prefix, **overrides)))
        made.append(h)
        return h

    yield build
    for h in made:
        h.broker.close()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


# ------------------------------------------------------------------ enqueue


def test_enqueue_writes_a_queued_record_at_the_back_of_its_ready_list(h: Harness) -> None:
    first = h.put(NORMAL)
    second = h.put(NORMAL)

    assert h.ready(NORMAL) == [first, second]
    rec = h.record(second)
    assert rec.status is JobStatus.QUEUED
    assert rec.attempts == 0
    assert rec.job.task == "t.echo"
    assert rec.job.args == [second]


def test_enqueue_with_delay_waits_in_the_scheduled_set(h: Harness) -> None:
    job_id = h.put(NORMAL, delay_ms=60_000)

    assert h.record(job_id).status is JobStatus.SCHEDULED
    assert h.zset(h.keys.scheduled) == [job_id]
    assert h.ready(NORMAL) == []
    assert h.fetch(5) == []


def test_duplicate_job_id_is_not_created_twice(h: Harness) -> None:
    job = new_job(HIGH, job_id="report-7")
    (first,) = h.enqueue(job)

    (again,) = h.enqueue(new_job(LOW, job_id="report-7"))

    assert first.created and not again.created
    assert again.id == "report-7"
    assert again.status is JobStatus.QUEUED
    assert h.ready(HIGH) == ["report-7"]
    assert h.ready(LOW) == []
    assert h.record("report-7").job.priority is HIGH


def test_duplicate_of_a_running_job_reports_it_active(h: Harness) -> None:
    h.put(NORMAL, job_id="once")
    h.fetch_one()

    (again,) = h.enqueue(new_job(NORMAL, job_id="once"))

    assert not again.created
    assert again.status is JobStatus.ACTIVE
    assert h.ready(NORMAL) == []


# ------------------------------------------------------------------ fetch and priority


def test_fetch_takes_strict_priority_then_fifo(h: Harness) -> None:
    lows = [h.put(LOW) for _ in range(3)]
    normals = [h.put(NORMAL) for _ in range(2)]
    highs = [h.put(HIGH) for _ in range(2)]

    order = [h.fetch_one().id for _ in range(7)]

    assert order == highs + normals + lows


def test_batch_fetch_keeps_priority_order(h: Harness) -> None:
    low, normal, high = h.put(LOW), h.put(NORMAL), h.put(HIGH)

    leased = h.fetch(10)

    assert [j.id for j in leased] == [high, normal, low]


def test_low_job_never_starts_while_higher_work_is_ready(h: Harness) -> None:
    low = h.put(LOW)
    h.put(NORMAL)

    took: list[str] = []
    for _ in range(3):
        took.append(h.fetch_one().id)
        if len(took) < 3:
            h.put(HIGH)  # new urgent work keeps arriving

    assert low not in took
    assert h.ready(LOW) == [low]
    assert h.fetch_one().id == low


def test_fetch_leases_the_job_in_flight(h: Harness) -> None:
    job_id = h.put(NORMAL)
    now_ms = h.broker.run(h.ops.server_time_ms())

    lease = h.fetch_one()

    assert (lease.id, lease.token, lease.attempts) == (job_id, "1", 0)
    assert (lease.task, lease.args, lease.kwargs, lease.options) == (
        "t.echo",
        f'["{job_id}"]',
        "",
        "",
    )
    rec = h.record(job_id)
    assert rec.status is JobStatus.ACTIVE
    assert rec.worker == "w-test"
    deadline = h.redis.zscore(h.keys.inflight, job_id)
    assert now_ms + 29_000 <= deadline <= now_ms + 31_000
    assert h.ready(NORMAL) == []


def test_fetch_on_empty_queue_leases_nothing(h: Harness) -> None:
    fetched = h.broker.run(h.ops.fetch(Q, 5, "w"))

    assert fetched.jobs == []
    assert fetched.next_due_ms is None
    assert fetched.next_lease_ms is None


# ------------------------------------------------------------------ finish


def test_finish_records_the_result_and_expires_the_record(make: Callable[..., Harness]) -> None:
    h = make(result_ttl_s=120)
    lease = h.running()

    assert h.finish(lease, result_json='{"sum": 5}')

    rec = h.record(lease.id)
    assert rec.status is JobStatus.SUCCEEDED
    assert rec.result == {"sum": 5}
    assert rec.attempts == 1
    assert h.zset(h.keys.inflight) == []
    assert 0 < h.redis.ttl(h.keys.job(lease.id)) <= 120


def test_repeated_finish_is_a_no_op(h: Harness) -> None:
    lease = h.running()
    assert h.finish(lease, result_json="1")
    before = h.record(lease.id)

    # The same outcome again (a re-send after a lost reply) is acknowledged; another is refused.
    resent = h.finish(lease, result_json="1")
    other = h.finish(lease, JobStatus.DEAD, error_type="X", error="late")

    after = h.record(lease.id)
    assert resent is True
    assert other is False
    assert after == before
    assert after.status is JobStatus.SUCCEEDED
    assert after.attempts == 1
    assert after.error is None
    assert h.zset(h.keys.dead) == []


def test_dead_job_is_kept_in_the_dead_set_with_its_error(h: Harness) -> None:
    lease = h.running()

    ok = h.finish(
        lease, JobStatus.DEAD, error_type="ValueError", error="bad input", traceback="Traceback..."
    )

    rec = h.record(lease.id)
    assert ok
    assert rec.status is JobStatus.DEAD
    assert (rec.error_type, rec.error, rec.traceback) == ("ValueError", "bad input", "Traceback...")
    assert h.zset(h.keys.dead) == [lease.id]
    assert h.redis.ttl(h.keys.job(lease.id)) == -1  # dead records are kept


# ------------------------------------------------------------------ retry, requeue, extend


def test_retry_schedules_the_next_attempt_after_the_backoff(h: Harness) -> None:
    lease = h.running()
    now_ms = h.broker.run(h.ops.server_time_ms())

    ok = h.broker.run(h.ops.retry(Q, lease.id, lease.token, 60_000, ("IOError", "flaky", "tb")))

    rec = h.record(lease.id)
    assert ok
    assert rec.status is JobStatus.RETRYING
    assert rec.attempts == 1
    assert (rec.error_type, rec.error) == ("IOError", "flaky")
    assert h.zset(h.keys.inflight) == []
    run_at = h.redis.zscore(h.keys.scheduled, lease.id)
    assert now_ms + 59_000 <= run_at <= now_ms + 61_000
    assert h.fetch(5) == []


def test_retry_without_delay_is_fetched_again_with_its_attempt_counted(h: Harness) -> None:
    lease = h.running()

    h.broker.run(h.ops.retry(Q, lease.id, lease.token, 0, ("E", "m", "")))
    again = h.fetch_one()

    assert again.id == lease.id
    assert again.attempts == 1
    assert again.token == "2"


def test_requeue_hands_the_job_back_to_the_front_unrun(h: Harness) -> None:
    first, second = h.put(), h.put()
    lease = h.fetch_one()
    assert lease.id == first

    (ok,) = h.broker.run(h.ops.requeue(Q, [(lease.id, lease.token)]))

    assert ok
    assert h.ready(NORMAL) == [first, second]
    rec = h.record(first)
    assert rec.status is JobStatus.QUEUED
    assert rec.attempts == 0
    assert h.zset(h.keys.inflight) == []
    assert h.fetch_one().id == first


def test_requeue_with_delay_schedules_the_job(h: Harness) -> None:
    lease = h.running()

    (ok,) = h.broker.run(h.ops.requeue(Q, [(lease.id, lease.token)], delay_ms=60_000))

    assert ok
    assert h.record(lease.id).status is JobStatus.SCHEDULED
    assert h.zset(h.keys.scheduled) == [lease.id]
    assert h.ready(NORMAL) == []


def test_extend_renews_the_lease_of_its_holder_only(make: Callable[..., Harness]) -> None:
    short = make(lease_s=1.0)
    long = make(lease_s=60.0)
    lease = short.running()
    first_deadline = short.redis.zscore(short.keys.inflight, lease.id)

    lost, cancel = long.broker.run(long.ops.extend(Q, [(lease.id, lease.token)]))
    lost_stale, _ = long.broker.run(long.ops.extend(Q, [(lease.id, "999")]))

    assert (lost, cancel) == (set(), set())
    assert short.redis.zscore(short.keys.inflight, lease.id) >= first_deadline + 58_000
    assert lost_stale == {lease.id}


def test_extend_reports_cancel_requests(h: Harness) -> None:
    lease = h.running()
    h.broker.run(h.ops.cancel(Q, lease.id, "ctl"))

    _, cancel = h.broker.run(h.ops.extend(Q, [(lease.id, lease.token)]))

    assert cancel == {lease.id}


# ------------------------------------------------------------------ leases, reclaim, fencing


def test_expired_lease_is_reclaimed_by_the_next_fetch(make: Callable[..., Harness]) -> None:
    h = make(lease_s=0.3)
    job_id = h.put()
    # Before the lease is taken: the lease runs from inside that fetch, which can take 0.1 s
    # or more on memory:// (its first call compiles the script), so a clock started after it
    # could see the reclaim "early".
    started = time.monotonic()
    first = h.fetch_one()

    fetched = h.broker.run(h.ops.fetch(Q, 1, "w2"))
    second = wait_until(lambda: h.fetch(1), timeout_s=5)[0]

    assert fetched.jobs == []
    assert fetched.next_lease_ms is not None and fetched.next_lease_ms <= 300
    assert time.monotonic() - started >= 0.2
    assert (second.id, second.token, second.attempts) == (job_id, "2", 0)
    assert first.token == "1"


def test_stale_token_is_refused_after_a_reclaim(make: Callable[..., Harness]) -> None:
    h = make(lease_s=0.3)
    h.put()
    old = h.fetch_one()
    new = wait_until(lambda: h.fetch(1))[0]

    refused = [
        h.finish(old, result_json='"zombie"'),
        h.broker.run(h.ops.retry(Q, old.id, old.token, 0, ("E", "m", ""))),
        h.broker.run(h.ops.requeue(Q, [(old.id, old.token)]))[0],
    ]
    lost, _ = h.broker.run(h.ops.extend(Q, [(old.id, old.token)]))

    assert refused == [False, False, False]
    assert lost == {old.id}
    assert h.record(old.id).status is JobStatus.ACTIVE
    assert h.finish(new, result_json='"fresh"')
    assert h.record(old.id).result == "fresh"


def test_job_is_poison_after_max_deliveries(make: Callable[..., Harness]) -> None:
    h = make(lease_s=0.2, max_deliveries=2)
    job_id = h.put()
    h.fetch_one()
    wait_until(lambda: h.fetch(1))  # second delivery, whose worker "dies" too

    wait_until(lambda: h.fetch(1) or h.record(job_id).status is JobStatus.DEAD)

    rec = h.record(job_id)
    assert rec.status is JobStatus.DEAD
    assert rec.error_type == "PoisonJob"
    assert "poison" in (rec.error or "")
    assert h.zset(h.keys.dead) == [job_id]
    assert h.zset(h.keys.inflight) == []


@pytest.mark.parametrize(
    "foreign",
    [b'{"id": "not ours"}', b"\xff\xfe not utf-8 \x00"],
    ids=["utf8-junk", "binary"],
)
def test_foreign_bytes_in_a_ready_list_are_dead_lettered(h: Harness, foreign: bytes) -> None:
    if foreign.startswith(b"\xff") and h.broker.settings.is_memory:
        pytest.skip("fakeredis' cjson cannot encode non-UTF-8 strings (real Redis can)")
    h.redis.lpush(h.keys.ready(NORMAL), foreign)
    good = h.put()

    leased = h.fetch(2)

    assert [j.id for j in leased] == [good]
    assert h.zset(h.keys.dead) == [foreign.decode("utf-8", "surrogateescape")]
    # Read the record by its raw key: the id need not be valid UTF-8.
    record = h.redis.hgetall(h.keys.job_prefix.encode() + foreign)
    assert record["s"] == "x"
    assert record["error_type"] == "PoisonJob"
    assert h.ready(NORMAL) == []


# ------------------------------------------------------------------ scheduling


def test_scheduled_job_is_promoted_when_due(h: Harness) -> None:
    job_id = h.put(HIGH, delay_ms=300)
    started = time.monotonic()

    early = h.broker.run(h.ops.fetch(Q, 1, "w"))
    lease = wait_until(lambda: h.fetch(1))[0]

    assert early.jobs == []
    assert early.next_due_ms is not None and 0 < early.next_due_ms <= 300
    assert lease.id == job_id
    assert time.monotonic() - started >= 0.25
    assert h.zset(h.keys.scheduled) == []


def test_promoted_job_joins_the_back_of_its_priority(h: Harness) -> None:
    late = h.put(NORMAL, delay_ms=100)
    waiting = h.put(NORMAL)

    # Housekeeping-only fetches (count 0) promote without leasing anything.
    wait_until(lambda: h.fetch(0) == [] and h.record(late).status is JobStatus.QUEUED)

    assert h.ready(NORMAL) == [waiting, late]
    assert h.zset(h.keys.scheduled) == []


# ------------------------------------------------------------------ cancel, revive


def test_cancel_removes_a_waiting_job(h: Harness) -> None:
    queued, scheduled = h.put(LOW), h.put(LOW, delay_ms=60_000)

    answers = [h.broker.run(h.ops.cancel(Q, job_id, "ctl")) for job_id in (queued, scheduled)]

    assert answers == [("cancelled", "cancelled")] * 2
    assert h.ready(LOW) == []
    assert h.zset(h.keys.scheduled) == []
    assert h.record(queued).status is JobStatus.CANCELLED
    assert h.fetch(5) == []


def test_cancel_of_running_final_and_missing_jobs(h: Harness) -> None:
    running = h.running()
    done = h.running()
    h.finish(done)

    assert h.broker.run(h.ops.cancel(Q, running.id, "ctl")) == ("requested", "active")
    assert h.record(running.id).cancel_requested
    assert h.broker.run(h.ops.cancel(Q, done.id, "ctl")) == ("final", "succeeded")
    assert h.broker.run(h.ops.cancel(Q, "no-such-job", "ctl"))[0] == "missing"


def test_revive_moves_dead_jobs_back_with_a_fresh_budget(h: Harness) -> None:
    lease = h.running(HIGH)
    h.finish(lease, JobStatus.DEAD, error_type="E", error="boom")

    moved = h.broker.run(h.ops.revive(Q, [lease.id, "not-dead"]))

    assert moved == 1
    assert h.zset(h.keys.dead) == []
    rec = h.record(lease.id)
    assert rec.status is JobStatus.QUEUED
    assert rec.attempts == 0
    assert h.fetch_one().id == lease.id


def test_counts_see_every_place(h: Harness) -> None:
    dead = h.running(HIGH)
    h.finish(dead, JobStatus.DEAD, error_type="E", error="x")
    h.running(HIGH)
    for priority in (HIGH, LOW, LOW):
        h.put(priority)
    h.put(NORMAL, delay_ms=60_000)

    counts = h.broker.run(h.ops.counts(Q))

    assert counts.ready == {HIGH: 1, NORMAL: 0, LOW: 2}
    assert (counts.scheduled, counts.inflight, counts.dead) == (1, 1, 1)


# ------------------------------------------------------------------ cluster safety


def test_every_key_of_a_queue_is_in_one_hash_slot(h: Harness) -> None:
    # Drive every kind of key into existence, then look at what is really in Redis.
    h.put(HIGH)
    h.put(LOW)
    h.put(delay_ms=60_000)
    failing = h.fetch_one()
    h.finish(failing, JobStatus.DEAD, error_type="E", error="x")
    waited = h.running()
    h.broker.run(h.ops.watch(Q, waited.id))
    h.finish(waited)
    h.enqueue(NewJob("u1", "t.echo", NORMAL, new_job(job_id="u1").fields, unique_key="k1"))

    keys = [k for k in h.redis.scan_iter(match=f"{h.keys.prefix}:{{{Q}}}*")]
    slots = {key_slot(k.encode()) for k in keys}
    declared = [*h.keys.ready_lists, h.keys.scheduled, h.keys.inflight, h.keys.dead, h.keys.wake]
    declared += [h.keys.job("x"), h.keys.done("x"), h.keys.unique("x")]

    assert len(keys) >= 9
    assert any(":done:" in k for k in keys)
    assert any(":unique:" in k for k in keys)
    assert slots == {key_slot(f"{{{Q}}}".encode())}
    assert {key_slot(k.encode()) for k in declared} == slots


# ------------------------------------------------------------------ re-sent fetch


def test_a_resent_fetch_returns_its_own_leases_and_leases_nothing_new(h: Harness) -> None:
    # A fetch whose reply was lost (a killed connection) is sent again with its request id: the
    # worker gets the jobs that call leased, instead of leasing more and stranding those.
    ids = [h.put() for _ in range(3)]

    def fetch(request: str, answered: str = "", count: int = 2) -> list[Leased]:
        op = h.ops.fetch(Q, count, "w-test", request_id=request, answered_id=answered)
        return h.broker.run(op).jobs

    first = fetch("r1")
    assert [lease.id for lease in first] == ids[:2]
    again = fetch("r1", count=5)
    assert [(x.id, x.token, x.args) for x in again] == [(x.id, x.token, x.args) for x in first]
    assert h.ready() == ids[2:]  # nothing more was leased
    assert len(h.zset(h.keys.inflight)) == 2

    # A lease that is no longer the request's (finished here) is not handed out again.
    assert h.finish(first[0])
    assert [x.id for x in fetch("r1")] == [ids[1]]

    # Once answered, the request is forgotten: the same id would lease afresh.
    assert [x.id for x in fetch("r2", answered="r1", count=1)] == [ids[2]]
    assert h.redis.exists(h.keys.fetched + "r1") == 0
    assert fetch("r1") == []


def test_wait_then_fetch_leases_at_once_what_is_ready_and_times_out_when_empty(
    h: Harness,
) -> None:
    # The blocking pop and the fetch in one request (driven here by the sync driver).
    job_id = h.put()
    (lease,) = h.broker.run(h.ops.wait_then_fetch(Q, 5, "w-test", 5.0)).jobs
    assert lease.id == job_id

    started = time.monotonic()
    assert h.broker.run(h.ops.wait_then_fetch(Q, 5, "w-test", 0.05)).jobs == []
    assert time.monotonic() - started < 4  # its own timeout, not a hang


# ------------------------------------------------------------------ overlapped bulk enqueue


def _ready_ids(h: Harness) -> list[str]:
    return list(h.redis.lrange(h.keys.ready(NORMAL), 0, -1))


def test_overlapped_enqueue_writes_every_chunk_once_in_order(h: Harness) -> None:
    jobs = [new_job() for _ in range(1000)]
    chunks = [jobs[i : i + 100] for i in range(0, 1000, 100)]
    results = h.broker.run_overlapped(h.ops.enqueue(Q, c) for c in chunks)
    assert [r.id for chunk in results for r in chunk] == [j.id for j in jobs]
    assert all(r.created for chunk in results for r in chunk)
    assert _ready_ids(h) == [j.id for j in jobs]


@pytest.mark.parametrize("flush_before", [0, 3])
def test_overlapped_enqueue_survives_a_script_flush(h: Harness, flush_before: int) -> None:
    # Before the stream (it loads the script first) or in the middle of it (NOSCRIPT wrote
    # nothing: the refused chunks are sent again, in order, once the script is back).
    h.put()
    jobs = [new_job() for _ in range(300)]

    def ops() -> Iterator[Any]:
        for n, i in enumerate(range(0, 300, 50)):
            if n == flush_before:
                h.redis.script_flush()
            yield h.ops.enqueue(Q, jobs[i : i + 50])

    results = h.broker.run_overlapped(ops())
    assert all(r.created for chunk in results for r in chunk)
    assert _ready_ids(h)[1:] == [j.id for j in jobs]


def test_overlapped_enqueue_resends_what_a_killed_connection_lost(
    redis_url: str, prefix: str
) -> None:
    # The producer's connection dies with calls in flight: they are sent again, and the job ids
    # make the second send of an already-written chunk a no-op, so every job is there once.
    h = Harness(SyncBroker(Settings(redis_url=redis_url, prefix=prefix)))
    killer = redis.Redis.from_url(redis_url)
    jobs = [new_job() for _ in range(600)]

    def ops() -> Iterator[Any]:
        for n, i in enumerate(range(0, 600, 50)):
            if n == 4:
                killer.client_kill_filter(_type="normal", skipme=True)
            yield h.ops.enqueue(Q, jobs[i : i + 50])

    results = h.broker.run_overlapped(ops())
    assert [r.id for chunk in results for r in chunk] == [j.id for j in jobs]
    assert sorted(_ready_ids(h)) == sorted(j.id for j in jobs)
    killer.close()
    h.broker.close()


def test_requeue_of_several_jobs_keeps_their_order_at_the_front(h: Harness) -> None:
    waiting = h.put()
    leases = h.fetch(0)
    ids = [h.put() for _ in range(3)]
    leases = h.fetch(4)
    assert [x.id for x in leases] == [waiting, *ids]

    handed = h.broker.run(h.ops.requeue(Q, [(x.id, x.token) for x in leases[1:]]))

    assert handed == [True, True, True]
    assert h.ready() == ids


def test_a_replayed_fetch_renews_the_leases_it_returns(h: Harness) -> None:
    h.put()
    op = h.ops.fetch(Q, 1, "w-test", request_id="r-renew")
    (lease,) = h.broker.run(op).jobs
    h.redis.zadd(h.keys.inflight, {lease.id: 2**52}, xx=True)  # a deadline no renewal would set
    before = h.redis.zscore(h.keys.inflight, lease.id)

    (again,) = h.broker.run(h.ops.fetch(Q, 1, "w-test", request_id="r-renew")).jobs

    assert again.id == lease.id
    assert h.redis.zscore(h.keys.inflight, lease.id) < before  # a fresh lease from now


def test_a_replay_skips_a_lease_that_already_expired(h: Harness) -> None:
    h.put()
    (lease,) = h.broker.run(h.ops.fetch(Q, 1, "w-test", request_id="r-late")).jobs
    h.redis.zadd(h.keys.inflight, {lease.id: 1}, xx=True)  # expired, not yet reclaimed

    replay = h.broker.run(h.ops.fetch(Q, 0, "w-test", request_id="r-late", batch=0)).jobs

    assert replay == []


def test_a_late_finish_matching_what_the_reaper_recorded_is_still_refused(h: Harness) -> None:
    # The reaper ended this delivery (cancelled while its worker was gone): the worker's late
    # "cancelled" is not a re-send of its own finish, so it is refused, not acknowledged.
    lease = h.running()
    h.broker.run(h.ops.cancel(Q, lease.id, "control"))
    h.redis.zadd(h.keys.inflight, {lease.id: 1}, xx=True)
    h.fetch(0)
    assert h.record(lease.id).status is JobStatus.CANCELLED

    assert h.finish(lease, JobStatus.CANCELLED) is False
