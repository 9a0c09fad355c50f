"""Network faults between workers and Redis, through :class:`tests.support.faultproxy.FaultProxy`.

Real worker processes reach a private redis-server through the proxy (one more worker reaches
it directly, and so does the producer); the proxy injects latency spikes, connection resets, a
black hole longer than a lease, and a half-open connection that never answers. Each test runs
:func:`tests.support.chaos.network_fault` and checks its ledger: nothing lost, and a job ran twice
only if a proxied worker held it during a fault. The default run puts the four faults in one
sequence (about 25 s); the long forms (``pytest -m slow``) are the README's figures.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.support import chaos

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("CI"),
    reason="the network fault suite starts its own redis-server; none is installed",
)


def assert_clean(report: chaos.Report) -> None:
    assert report.lost == 0, report
    assert "worker_tracebacks" not in report.notes, report
    assert "not_final" not in report.notes, report
    assert report.notes["succeeded"] == report.jobs, report
    assert report.duplicated <= report.in_flight_at_kills, report


def test_latency_resets_a_partition_and_a_half_open_link_lose_nothing() -> None:
    report = chaos.network_fault(
        chaos.NETWORK_FAULTS, jobs=200, fault_s=1.5, lease_s=1.0, proxied=1
    )

    assert_clean(report)
    assert report.notes["connections_dropped"] > 0  # resets, and what each heal closed
    assert report.notes["proxied_workers_alive"] is True, report  # none crashed or gave up


@pytest.mark.slow
@pytest.mark.parametrize("fault", chaos.NETWORK_FAULTS)
def test_long_network_fault_loses_nothing(fault: str) -> None:
    report = chaos.LONG[f"net_{fault}"]()

    print(chaos.table([report]))
    assert_clean(report)
