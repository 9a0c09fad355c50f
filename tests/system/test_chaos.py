"""The chaos suite: real worker processes and a private Redis under faults; nothing may be lost.

The short form (the default run, about half a minute in all) uses small numbers; the long form
(``pytest -m slow tests/system/test_chaos.py``) uses the README's Reliability figures. Each test
calls one scenario of :mod:`tests.support.chaos` and checks what its ledger-based checker found.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import chaos

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="the chaos suite starts its own redis-server; none is installed",
)

#: An idle worker blocks on the wake marker up to this long before its next reclaim pass.
REAP_INTERVAL_S = 5.0


@pytest.mark.slow  # a SIGKILLed worker's job runs again: test_worker_process.py
def test_workers_killed_at_random_lose_nothing_and_redo_only_jobs_in_flight() -> None:
    report = chaos.kill_workers(jobs=600, workers=3, concurrency=4, kill_every_s=1.5, lease_s=2)

    assert report.kills >= 2
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.duplicated <= report.in_flight_at_kills, report
    assert report.max_recovery_s is not None
    assert report.max_recovery_s <= 2 + REAP_INTERVAL_S, report
    assert report.notes["succeeded"] == report.jobs


def test_redis_killed_and_restarted_twice_under_load_loses_nothing() -> None:
    report = chaos.redis_restarts(jobs=600, workers=2, restarts=2, down_s=1.0)

    assert report.redis_restarts == 2
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["succeeded"] == report.jobs
    assert report.notes["workers_said_unreachable"] == "2/2"
    assert "not_final" not in report.notes


@pytest.mark.slow  # killed connections, lost replies: test_fuzz.py, test_ambiguous_enqueue.py
def test_client_kill_every_second_loses_nothing_and_enqueues_nothing_twice() -> None:
    report = chaos.client_kills(jobs=600, workers=2, every_s=1.0)

    assert report.notes["connections_killed"] > 0
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.duplicated == 0, report
    assert report.notes["duplicate_enqueues"] == 0
    assert report.notes["succeeded"] == report.jobs


@pytest.mark.slow  # a paused worker's late outcome refused: test_zombie_worker.py
def test_worker_paused_past_its_leases_has_its_late_outcomes_refused() -> None:
    report = chaos.paused_worker(jobs=150, concurrency=4, lease_s=1.0, pause_s=2.5)

    assert report.in_flight_at_kills > 0
    assert report.notes["late_outcomes_refused"] >= 1
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.duplicated <= report.in_flight_at_kills, report
    assert report.notes["succeeded"] == report.jobs
    assert report.max_recovery_s is not None
    assert report.max_recovery_s <= 1 + REAP_INTERVAL_S, report


def test_idle_worker_picks_up_new_work_soon_after_redis_returns() -> None:
    report = chaos.idle_outage(down_s=3.0)

    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["worker_said_unreachable"] is True
    assert report.notes["worker_said_reconnected"] is True
    assert report.max_recovery_s is not None
    assert report.max_recovery_s < 3.0, report


def test_cpu_bound_jobs_longer_than_the_lease_are_never_reclaimed() -> None:
    report = chaos.long_jobs(jobs=4, workers=2, lease_s=1.0, job_s=3.0, burners=2)

    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["spurious_reclaims"] == 0, report
    assert report.notes["redeliveries"] == 0, report
    assert report.duplicated == 0


@pytest.mark.slow  # poison after max_deliveries: test_broker.py, test_corrupt_records.py
def test_job_that_kills_its_worker_is_buried_as_poison_after_max_deliveries() -> None:
    report = chaos.poison(jobs=20, max_deliveries=3, lease_s=1.0)

    assert report.notes["poison_status"] == "dead"
    assert report.notes["deliveries"] == "3"
    assert report.notes["in_dead_set"] is True
    assert "poison" in report.notes["reason"]
    assert report.kills == 3
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["succeeded"] == 20


def test_delay_at_maxmemory_raises_a_clear_error_and_writes_nothing() -> None:
    report = chaos.maxmemory(payload_kib=16, limit_mib=4)

    assert report.notes["error"].startswith("BrokerOutOfMemoryError: Redis is out of memory")
    assert report.notes["half_written"] == 0
    assert report.notes["accepted"] > 0
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["succeeded"] == report.notes["accepted"]


def test_worker_memory_stays_flat_over_many_jobs() -> None:
    report = chaos.rss(jobs=5000)

    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.notes["rss_end_mib"] - report.notes["rss_start_mib"] < 8, report


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in chaos.LONG if not n.startswith("net_")])
def test_long_form_loses_nothing(name: str) -> None:
    report = chaos.LONG[name]()

    print(chaos.table([report]))
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert report.duplicated <= report.in_flight_at_kills, report
